-- The read-only Postgres role Grafana's "wa-sip-bridge CDR" data source logs in with: it may read the
-- calls table and nothing else, and every transaction it starts is read-only. Run once, as the
-- database owner, with the password you put in GRAFANA_DB_PASSWORD (docs/monitoring.md):
--
--   docker compose exec -T postgres psql -U bridge -d bridge -v ON_ERROR_STOP=1 \
--     -v password="$GRAFANA_DB_PASSWORD" < docker/grafana/readonly-role.sql
--
-- To change the password later: ALTER ROLE grafana_reader PASSWORD '...';
-- The migrations never touch this role; a future table the dashboards need gets its own GRANT here.
CREATE ROLE grafana_reader LOGIN PASSWORD :'password' NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
ALTER ROLE grafana_reader SET default_transaction_read_only = on;
ALTER ROLE grafana_reader SET statement_timeout = '30s';
GRANT CONNECT ON DATABASE :"DBNAME" TO grafana_reader;
GRANT USAGE ON SCHEMA public TO grafana_reader;
GRANT SELECT ON TABLE calls TO grafana_reader;
