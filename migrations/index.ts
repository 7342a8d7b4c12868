// Migrations are listed here rather than discovered on disk, so they load the same way under tsx,
// in tests and in a bundled build.
import type { Knex } from 'knex';
import * as init from './20261125000000_init.ts';
import * as invocations from './20261125000100_invocations.ts';
import * as retention from './20261125000200_retention.ts';
import * as accounts from './20261202000100_accounts.ts';
import * as uploads from './20261202000200_uploads.ts';
import * as safety from './20261202000300_safety.ts';
import * as endpoints from './20261202000400_endpoints.ts';
import * as config from './20261202000500_config.ts';
import * as platformSettings from './20261202000600_platform_settings.ts';
import * as delivery from './20261202000700_delivery.ts';
import * as builds from './20261202000800_builds.ts';
import * as observability from './20261202001100_observability.ts';
import * as storedArchivesIndex from './20261203000100_stored_archives_index.ts';
import * as buildingIndex from './20261203120000_building_index.ts';
import * as storedArchivesSizedIndex from './20261204000100_stored_archives_sized_index.ts';
import * as functionUsage from './20261205000100_function_usage.ts';

interface Migration {
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

const migrations: Record<string, Migration> = {
  '20261125000000_init': init,
  '20261125000100_invocations': invocations,
  '20261125000200_retention': retention,
  '20261202000100_accounts': accounts,
  '20261202000200_uploads': uploads,
  '20261202000300_safety': safety,
  '20261202000400_endpoints': endpoints,
  '20261202000500_config': config,
  '20261202000600_platform_settings': platformSettings,
  '20261202000700_delivery': delivery,
  '20261202000800_builds': builds,
  '20261202001100_observability': observability,
  '20261203000100_stored_archives_index': storedArchivesIndex,
  '20261203120000_building_index': buildingIndex,
  '20261204000100_stored_archives_sized_index': storedArchivesSizedIndex,
  '20261205000100_function_usage': functionUsage,
};

export const migrationSource: Knex.MigrationSource<string> = {
  getMigrations: async () => Object.keys(migrations).sort(),
  getMigrationName: (name) => name,
  getMigration: async (name) => migrations[name]!,
};
