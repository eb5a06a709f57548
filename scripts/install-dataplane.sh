#!/usr/bin/env bash
# Installs the mail data plane from Debian (Postfix and Dovecot with their SQLite and PostgreSQL lookup
# drivers), as root, without configuring or starting the system services: HMC runs its own private
# instances (`hmc dataplane up`). Idempotent: does nothing when every binary and driver is present.
set -euo pipefail

PKGS=(postfix postfix-sqlite postfix-pgsql dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd
  dovecot-sieve dovecot-managesieved dovecot-sqlite dovecot-pgsql)

have_all() {
  local f
  for f in /usr/sbin/postfix /usr/sbin/postconf /usr/sbin/postmap /usr/sbin/dovecot /usr/bin/doveadm \
    /usr/lib/dovecot/imap /usr/lib/dovecot/pop3 /usr/lib/dovecot/lmtp /usr/lib/dovecot/managesieve; do
    [ -x "$f" ] || return 1
  done
  # the lookup drivers are plugins: a missing one only shows when a map or passdb is first used
  ls /usr/lib/postfix/postfix-sqlite.so* /usr/lib/postfix/postfix-pgsql.so* >/dev/null 2>&1 || return 1
  ls /usr/lib/dovecot/modules/auth/libdriver_sqlite.so /usr/lib/dovecot/modules/auth/libdriver_pgsql.so >/dev/null 2>&1 \
    || ls /usr/lib/dovecot/modules/libdriver_sqlite.so /usr/lib/dovecot/modules/libdriver_pgsql.so >/dev/null 2>&1 || return 1
  getent passwd postfix >/dev/null && getent passwd dovecot >/dev/null && getent passwd dovenull >/dev/null || return 1
  getent group postdrop >/dev/null || return 1
}

if have_all; then
  echo "install-dataplane: Postfix and Dovecot already installed"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-dataplane: must run as root to install: ${PKGS[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# no system configuration: HMC writes its own per instance (and Postfix leaves /etc/postfix/main.cf alone)
debconf-set-selections <<'EOF'
postfix postfix/main_mailer_type select No configuration
postfix postfix/mailname string localhost.localdomain
EOF

# keep the package scripts from starting the system daemons on the standard ports
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 0755 /usr/sbin/policy-rc.d
  created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT

apt-get update -qq
apt-get install -y -qq "${PKGS[@]}"

have_all || { echo "install-dataplane: packages installed but a binary or driver is still missing" >&2; exit 1; }
echo "install-dataplane: installed ${PKGS[*]}"
