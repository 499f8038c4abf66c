-- deploy/postgres/roles.sql: the replicator's two PostgreSQL roles and
-- their privileges (docs/least-privilege.md explains each one).
--
--   cdc_owner  owns schema cdc and every table, sequence, type and function
--              the migrations create; runs `cdc migrate` and nothing else.
--   cdc_sink   the replicator's role (`cdc run`, and the sink-side
--              commands: dlq, replay, verify, status, position): SELECT,
--              INSERT, UPDATE, DELETE on the target tables and on cdc.*;
--              only SELECT and INSERT on funds_ledger_entries; no
--              TRUNCATE, no DDL, not the owner of anything (so ALTER
--              TABLE ... DISABLE TRIGGER, which needs ownership, cannot
--              switch the ledger's append-only triggers off), no
--              superuser (so session_replication_role cannot be set).
--
-- Run it as a superuser connected to the target database, with psql (or
-- anything that runs a multi-statement script):
--
--   psql -v ON_ERROR_STOP=1 -d "$DATABASE" -f deploy/postgres/roles.sql
--
-- and in this order:
--   1. this file           (creates the roles and schema cdc)
--   2. cdc migrate         with postgres.url naming cdc_owner
--   3. this file again     (grants on the tables that migration created,
--                           and narrows funds_ledger_entries)
-- and again after every later `cdc migrate`. It is idempotent. Tables a
-- later migration creates get cdc_sink's DML at once through the default
-- privileges below; step 3 is what narrows an append-only table (the
-- ledger) to SELECT and INSERT, so do not skip it.
--
-- Passwords: this file sets none (a password in a file under version
-- control is a leaked password) and the roles are created without one,
-- which refuses every password login until one is set. Set each role's
-- password once, and on every rotation, from your secret store:
--
--   interactive:      psql -d "$DATABASE" -c '\password cdc_sink'
--                     (psql hashes it client-side: the cleartext reaches
--                     neither the server nor its log)
--   from a file:      printf '%s\n' "ALTER ROLE cdc_sink PASSWORD :'pw';" |
--                       psql -v ON_ERROR_STOP=1 -d "$DATABASE" \
--                            -v pw="$(cat /run/secrets/cdc_sink_password)"
--                     (server logs with log_statement = 'ddl' or 'all'
--                     record this statement: use \password there)
--
-- With password_encryption = scram-sha-256 (the default since PostgreSQL
-- 14) the server stores a SCRAM verifier; pg_hba.conf should require
-- scram-sha-256 (and hostssl) for both roles.
--
-- Plain SQL, no psql meta-commands: any client that runs a script works
-- (the end-to-end test runs it through pgx). Requires PostgreSQL 13 or
-- later (trusted extensions); tested against 15.

-- The roles. The attributes are set on every run, so a role that existed
-- before (created by hand, with other attributes) is brought in line.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cdc_owner') THEN
        CREATE ROLE cdc_owner LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cdc_sink') THEN
        CREATE ROLE cdc_sink LOGIN;
    END IF;
END
$$;
ALTER ROLE cdc_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT;
ALTER ROLE cdc_sink LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;

-- cdc_sink must not act as the owner: a member of cdc_owner could SET
-- ROLE to it and then alter or drop the ledger and its triggers.
DO $$
BEGIN
    IF pg_has_role('cdc_sink', 'cdc_owner', 'MEMBER') THEN
        RAISE EXCEPTION 'cdc_sink is a member of cdc_owner: REVOKE cdc_owner FROM cdc_sink first';
    END IF;
    IF EXISTS (SELECT FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
               WHERE m.member = 'cdc_sink'::regrole) THEN
        RAISE EXCEPTION 'cdc_sink is a member of other roles (%): it must hold only the grants of this file',
            (SELECT string_agg(r.rolname, ', ') FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
             WHERE m.member = 'cdc_sink'::regrole);
    END IF;
END
$$;

-- Connecting. cdc_owner may create in the database: migration 00001 runs
-- CREATE SCHEMA IF NOT EXISTS cdc, which PostgreSQL checks for CREATE on
-- the database before it looks whether the schema exists, and migration
-- 00013 creates the (trusted) pg_trgm extension. cdc_sink may only
-- connect. PUBLIC keeps its default CONNECT and TEMPORARY on the database
-- (revoking them from PUBLIC would affect every other role; the replicator
-- creates no temporary tables, and a temporary table touches no
-- replicated data).
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT, CREATE ON DATABASE %I TO cdc_owner', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO cdc_sink', current_database());
    EXECUTE format('REVOKE CREATE ON DATABASE %I FROM cdc_sink', current_database());
END
$$;

-- Schemas. cdc is the replicator's bookkeeping, owned by cdc_owner; the
-- target tables live in public, where cdc_owner may create and PUBLIC may
-- not (the default since PostgreSQL 15; on older servers PUBLIC could,
-- and so could cdc_sink).
CREATE SCHEMA IF NOT EXISTS cdc AUTHORIZATION cdc_owner;
ALTER SCHEMA cdc OWNER TO cdc_owner;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO cdc_owner;
GRANT USAGE ON SCHEMA public, cdc TO cdc_sink;
REVOKE CREATE ON SCHEMA public, cdc FROM cdc_sink;

-- Tables and sequences that exist now (step 3): row DML, and nextval on
-- the bigserial sequences (cdc.dead_letters, cdc.dead_letter_attempts,
-- pg_dualwrite_gaps). Never TRUNCATE, REFERENCES or TRIGGER.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public, cdc TO cdc_sink;
REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA public, cdc FROM cdc_sink;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public, cdc TO cdc_sink;

-- Tables the next migrations create (as cdc_owner: default privileges
-- apply to objects their creator role makes, so migrate as cdc_owner,
-- never as a superuser).
ALTER DEFAULT PRIVILEGES FOR ROLE cdc_owner IN SCHEMA public, cdc
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO cdc_sink;
ALTER DEFAULT PRIVILEGES FOR ROLE cdc_owner IN SCHEMA public, cdc
    GRANT USAGE ON SEQUENCES TO cdc_sink;

-- The append-only ledger: SELECT and INSERT only. The sink writes it with
-- INSERT ... ON CONFLICT (id) DO NOTHING (its mapping is append_only), so
-- it needs nothing else; UPDATE, DELETE and TRUNCATE are refused by
-- privilege (42501) before the table's triggers (23001) are reached.
-- Migration bookkeeping (goose's version table) is the owner's: the sink
-- only reads it (the start-up check that the schema is current).
DO $$
BEGIN
    IF to_regclass('public.funds_ledger_entries') IS NOT NULL THEN
        REVOKE ALL ON public.funds_ledger_entries FROM cdc_sink, PUBLIC;
        GRANT SELECT, INSERT ON public.funds_ledger_entries TO cdc_sink;
    END IF;
    IF to_regclass('cdc.goose_db_version') IS NOT NULL THEN
        REVOKE ALL ON cdc.goose_db_version FROM cdc_sink, PUBLIC;
        GRANT SELECT ON cdc.goose_db_version TO cdc_sink;
    END IF;
END
$$;
