import type { Migration } from './store/migrate.js';
import { engineMigrations } from './engine/migrations.js';
import { directoryMigrations } from './directory/migrations.js';
import { plansMigrations } from './plans/migrations.js';
import { mailMigrations } from './mail/migrations.js';
import { resourcesMigrations } from './resources/migrations.js';
import { dataplaneMigrations } from './dataplane/migrations.js';
import { transportMigrations } from './transport/migrations.js';

/** Every area's migrations, in the one global order. */
export const MIGRATIONS: Migration[] = [...engineMigrations, ...directoryMigrations, ...plansMigrations, ...mailMigrations, ...resourcesMigrations, ...dataplaneMigrations, ...transportMigrations].sort((a, b) => a.id.localeCompare(b.id));
