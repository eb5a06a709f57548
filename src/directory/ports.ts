import type { Logger } from 'pino';

/** What every provider call receives (STYLE §6). */
export interface ProviderContext {
  signal: AbortSignal;
  log: Logger;
  requestId: string;
}

export interface HomeRef {
  orgId: string;
  userId: string;
}

/**
 * A back end keeping one home directory per user (HMC's File System provider). Converging verbs:
 * calling one twice, or after a crash half-way, is harmless.
 */
export interface HomeDirectoryProvider {
  ensureHome(ref: HomeRef, ctx: ProviderContext): Promise<void>;
  removeHome(ref: HomeRef, ctx: ProviderContext): Promise<void>;
  /** Every home that exists, for `hmc check` and tests. */
  listHomes(ctx: Pick<ProviderContext, 'signal'>): Promise<HomeRef[]>;
}
