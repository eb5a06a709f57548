import { domainToASCII, domainToUnicode } from 'node:url';
import { Errors } from './errors.js';

/**
 * Names and addresses. Everything stored is normalised: lower case, domains in A-label (punycode) form,
 * so one address has exactly one spelling on the whole platform.
 */

const LABEL_RE = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** Normalise a domain name (IDN accepted) to its A-label form, or throw `invalid_domain`. */
export function normalizeDomain(input: string): string {
  const trimmed = input.trim().replace(/\.$/, '');
  if (trimmed.length === 0 || trimmed.length > 253 || /[\s/@:]/.test(trimmed)) {
    throw Errors.invalidDomain(`"${input.slice(0, 64)}" is not a valid domain name`);
  }
  const ascii = domainToASCII(trimmed.toLowerCase());
  if (!ascii || ascii.length > 253) throw Errors.invalidDomain(`"${input.slice(0, 64)}" is not a valid domain name`);
  const labels = ascii.split('.');
  if (labels.length < 2 || !labels.every((l) => LABEL_RE.test(l)) || /^[0-9]+$/.test(labels[labels.length - 1]!)) {
    throw Errors.invalidDomain(`"${input.slice(0, 64)}" is not a valid domain name`);
  }
  // a label starting xn-- must round-trip, otherwise it is not valid punycode
  for (const l of labels) {
    if (l.startsWith('xn--') && domainToASCII(domainToUnicode(l)) !== l) {
      throw Errors.invalidDomain(`"${input.slice(0, 64)}" has an invalid IDN label`);
    }
  }
  return ascii;
}

/** The Unicode (U-label) form of a stored domain, for display. */
export function displayDomain(ascii: string): string {
  return domainToUnicode(ascii) || ascii;
}

// RFC 5322 dot-atom local part, ASCII only (SMTPUTF8 local parts are not accepted yet).
const LOCAL_RE = /^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;

/** Normalise an e-mail address to `local@a-label-domain` (lower case), or throw `invalid_address`. */
export function normalizeAddress(input: string): { address: string; local: string; domain: string } {
  const s = input.trim();
  const at = s.lastIndexOf('@');
  if (at <= 0 || at === s.length - 1) throw Errors.invalidAddress(`"${s.slice(0, 64)}" is not an e-mail address`);
  const local = s.slice(0, at).toLowerCase();
  if (local.length > 64 || !LOCAL_RE.test(local)) {
    throw Errors.invalidAddress(`"${s.slice(0, 64)}" has an invalid local part`);
  }
  let domain: string;
  try {
    domain = normalizeDomain(s.slice(at + 1));
  } catch {
    throw Errors.invalidAddress(`"${s.slice(0, 64)}" has an invalid domain`);
  }
  const address = `${local}@${domain}`;
  if (address.length > 254) throw Errors.invalidAddress('address is longer than 254 characters');
  return { address, local, domain };
}

/** Short machine names (reseller, organization and group names): lower-case letters, digits, '-', '_' and '.'. */
export const SLUG_PATTERN = '^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$';
const SLUG_RE = new RegExp(SLUG_PATTERN);

export function assertSlug(name: string, what: string): string {
  if (!SLUG_RE.test(name)) {
    throw Errors.invalidName(`${what} "${name.slice(0, 64)}" must be 1-64 of a-z, 0-9, '.', '_' or '-', starting and ending with a letter or digit`);
  }
  return name;
}

/** Display names: printable, no control characters (they end up in mail headers and CSV files). */
export const DISPLAY_NAME_PATTERN = '^[^\\u0000-\\u001f\\u007f]*$';
