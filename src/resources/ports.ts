import type { ProviderContext } from '../directory/ports.js';

/** Where a mailbox's data lives: its organization, its id and the store (with the store's server's mail root). */
export interface MailboxDataRef {
  orgId: string;
  mailboxId: string;
  storeId: string;
  mailRoot: string;
}

/**
 * A back end holding mailbox data on mailstores (the data plane's Dovecot; until then the `files` provider).
 * Converging verbs: calling one twice, or again after a crash half-way, is harmless.
 */
export interface MailboxDataProvider {
  /**
   * Make `to` hold the mailbox's data and `from` hold none: copy, then remove the source. A mailbox with no
   * data yet (Dovecot creates a maildir on first delivery or login) has nothing to copy.
   */
  moveMailbox(from: MailboxDataRef, to: MailboxDataRef, ctx: ProviderContext): Promise<void>;
  /**
   * Optional, called once the move is recorded as done (moving_from cleared, so nothing resolves the mailbox
   * at `from` any more): settle what reached `from` after moveMailbox finished (the data plane's Dovecot may
   * still have stored a delivery in flight there, or recreated an empty home) into `to`, and leave `from` empty.
   */
  finishMove?(from: MailboxDataRef, to: MailboxDataRef, ctx: ProviderContext): Promise<void>;
  /** Remove the data of a purged mailbox from `at` (nothing there is fine). */
  purgeMailbox(at: MailboxDataRef, ctx: ProviderContext): Promise<void>;
}
