-- Observability spans: table, indexes, SQL functions, view, row-level security.
--
-- PostgreSQL 15+ (a Supabase project or a plain server). Idempotent: applying it again changes
-- nothing, so every start may apply it. Apply it in one transaction:
--     psql -v ON_ERROR_STOP=1 --single-transaction -f database/ml/mlops_tables.sql
-- PostgresSpanRepository.setup() does the same under an advisory lock.
--
-- Role-specific grants and policies are applied only when Supabase's roles exist
-- (anon, authenticated, service_role); on a plain server the owner is the only user.
-- Later issues append additive changes (ADD COLUMN IF NOT EXISTS ...) at the marked place.

-- ---------------------------------------------------------------------------------------------
-- Table
-- ---------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.ml_observability_spans (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    span_id         text NOT NULL,
    trace_id        text NOT NULL,
    parent_span_id  text,
    operation_name  text NOT NULL,
    agent_name      text NOT NULL,
    agent_tier      smallint,
    span_kind       text NOT NULL DEFAULT 'agent',
    start_time      timestamptz NOT NULL,
    end_time        timestamptz,
    duration_ms     double precision,
    status          text NOT NULL DEFAULT 'completed',
    error_type      text,
    error_message   text,
    attributes      jsonb NOT NULL DEFAULT '{}'::jsonb,
    llm_model       text,
    input_tokens    integer,
    output_tokens   integer,
    total_tokens    integer,
    events          jsonb NOT NULL DEFAULT '[]'::jsonb,
    thread_id       text,
    tracestate      text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Columns added after the seed's table (a database created from the seed gains them here).
ALTER TABLE public.ml_observability_spans
    ADD COLUMN IF NOT EXISTS span_kind  text NOT NULL DEFAULT 'agent',
    ADD COLUMN IF NOT EXISTS events     jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN IF NOT EXISTS thread_id  text,
    ADD COLUMN IF NOT EXISTS tracestate text;
-- Cost (issue 13): who served an LLM call, the token kinds that change its price, its price.
ALTER TABLE public.ml_observability_spans
    ADD COLUMN IF NOT EXISTS provider           text,
    ADD COLUMN IF NOT EXISTS cache_read_tokens  integer,
    ADD COLUMN IF NOT EXISTS cache_write_tokens integer,
    ADD COLUMN IF NOT EXISTS reasoning_tokens   integer,
    ADD COLUMN IF NOT EXISTS cost_usd           numeric;
-- Later issues: additive columns go here.

-- Constraints by name, added when missing (so a seed-era table gets them too).
-- The unique key makes retries and replays idempotent (INSERT ... ON CONFLICT DO NOTHING).
DO $constraints$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT * FROM (VALUES
            ('ml_observability_spans_trace_span_key',
             'UNIQUE (trace_id, span_id)'),
            ('ml_observability_spans_span_id_format',
             'CHECK (span_id ~ ''^[0-9a-f]{16}$'' AND span_id <> repeat(''0'', 16))'),
            ('ml_observability_spans_trace_id_format',
             'CHECK (trace_id ~ ''^[0-9a-f]{32}$'' AND trace_id <> repeat(''0'', 32))'),
            ('ml_observability_spans_parent_span_id_format',
             'CHECK (parent_span_id ~ ''^[0-9a-f]{16}$'' AND parent_span_id <> repeat(''0'', 16))'),
            ('ml_observability_spans_agent_tier_range',
             'CHECK (agent_tier BETWEEN 0 AND 5)'),
            ('ml_observability_spans_span_kind_values',
             'CHECK (span_kind IN (''agent'', ''llm'', ''tool'', ''chain''))'),
            ('ml_observability_spans_status_values',
             'CHECK (status IN (''started'', ''completed'', ''error''))'),
            ('ml_observability_spans_end_after_start',
             'CHECK (end_time >= start_time)'),
            ('ml_observability_spans_duration_nonnegative',
             'CHECK (duration_ms >= 0)'),
            ('ml_observability_spans_input_tokens_nonnegative',
             'CHECK (input_tokens >= 0)'),
            ('ml_observability_spans_output_tokens_nonnegative',
             'CHECK (output_tokens >= 0)'),
            ('ml_observability_spans_total_tokens_nonnegative',
             'CHECK (total_tokens >= 0)'),
            ('ml_observability_spans_cache_read_tokens_nonnegative',
             'CHECK (cache_read_tokens >= 0)'),
            ('ml_observability_spans_cache_write_tokens_nonnegative',
             'CHECK (cache_write_tokens >= 0)'),
            ('ml_observability_spans_reasoning_tokens_nonnegative',
             'CHECK (reasoning_tokens >= 0)'),
            ('ml_observability_spans_cost_usd_nonnegative',
             'CHECK (cost_usd >= 0)'),
            ('ml_observability_spans_attributes_object',
             'CHECK (jsonb_typeof(attributes) = ''object'')'),
            ('ml_observability_spans_events_array',
             'CHECK (jsonb_typeof(events) = ''array'')')
        ) AS t(name, definition)
    LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_catalog.pg_constraint
            WHERE conrelid = 'public.ml_observability_spans'::regclass AND conname = c.name
        ) THEN
            EXECUTE format('ALTER TABLE public.ml_observability_spans ADD CONSTRAINT %I %s',
                           c.name, c.definition);
        END IF;
    END LOOP;
END
$constraints$;

COMMENT ON TABLE public.ml_observability_spans IS
    'One row per span (agent operation, LLM call, tool call, graph node); '
    'unique on (trace_id, span_id) so re-sent spans are not duplicated.';

-- ---------------------------------------------------------------------------------------------
-- Indexes: the seed's four, the per-agent window, and a covering index for window statistics
-- ---------------------------------------------------------------------------------------------
CREATE INDEX IF NOT EXISTS idx_ml_obs_spans_trace_id
    ON public.ml_observability_spans (trace_id);
CREATE INDEX IF NOT EXISTS idx_ml_obs_spans_start_time
    ON public.ml_observability_spans (start_time DESC);
CREATE INDEX IF NOT EXISTS idx_ml_obs_spans_agent_name
    ON public.ml_observability_spans (agent_name);
CREATE INDEX IF NOT EXISTS idx_ml_obs_spans_status
    ON public.ml_observability_spans (status);
CREATE INDEX IF NOT EXISTS idx_ml_obs_spans_agent_start
    ON public.ml_observability_spans (agent_name, start_time DESC);
CREATE INDEX IF NOT EXISTS idx_ml_obs_spans_window_covering
    ON public.ml_observability_spans (start_time)
    INCLUDE (agent_name, agent_tier, duration_ms, status, span_kind,
             input_tokens, output_tokens, total_tokens);
-- LLM spans only, for the cost statistics (a small part of all spans).
CREATE INDEX IF NOT EXISTS idx_ml_obs_spans_llm_cost
    ON public.ml_observability_spans (start_time)
    INCLUDE (agent_name, trace_id, llm_model, cost_usd)
    WHERE span_kind = 'llm';

-- ---------------------------------------------------------------------------------------------
-- Functions (SECURITY INVOKER: row-level security applies to the caller)
-- ---------------------------------------------------------------------------------------------
-- Per-agent statistics for spans with p_now - p_window <= start_time <= p_now.
-- Percentiles are percentile_cont (linear interpolation between closest ranks), i.e. Python's
-- statistics.quantiles(durations, n=100, method="inclusive"); spans without a duration count
-- in `count` but not in the duration statistics. Tokens come from llm spans only, so a parent
-- span never double-counts its children. p_now is a parameter so callers with an injected
-- clock get deterministic windows.
--
-- Why this shape: ordered-set aggregates force a GroupAggregate, i.e. a sort of every row in
-- the window by agent_name (text comparisons, mostly ties) carrying every aggregated column,
-- which spills to disk at the default work_mem. Instead one pass hash-aggregates the cheap
-- figures and collects each agent's durations (8 bytes a span); percentile_cont then sorts
-- only one agent's float8 durations, once for all three percentiles. Same numbers, since
-- percentile_cont depends only on the multiset of durations (avg_ms may differ from a sorted
-- plan in the last bits: float summation order). Memory: 8-16 bytes per span in the window.
CREATE OR REPLACE FUNCTION public.ml_agent_latency_stats(
    p_window interval,
    p_agent  text DEFAULT NULL,
    p_now    timestamptz DEFAULT now()
)
RETURNS TABLE (
    agent_name       text,
    agent_tier       smallint,
    count            bigint,
    error_count      bigint,
    error_rate       double precision,
    avg_ms           double precision,
    p50_ms           double precision,
    p95_ms           double precision,
    p99_ms           double precision,
    max_ms           double precision,
    llm_calls        bigint,
    input_tokens     bigint,
    output_tokens    bigint,
    total_tokens     bigint,
    spans_per_minute double precision
)
LANGUAGE sql
STABLE
SET search_path = ''
AS $fn$
    SELECT
        g.agent_name,
        g.agent_tier,
        g.spans,
        g.errors,
        g.errors::double precision / g.spans,
        g.avg_ms,
        q.percentiles[1],
        q.percentiles[2],
        q.percentiles[3],
        g.max_ms,
        g.llm_calls,
        g.input_tokens,
        g.output_tokens,
        g.total_tokens,
        g.spans::double precision / (extract(epoch FROM p_window)::double precision / 60.0)
    FROM (
        SELECT
            s.agent_name,
            max(s.agent_tier)::smallint AS agent_tier,
            count(*) AS spans,
            count(*) FILTER (WHERE s.status = 'error') AS errors,
            avg(s.duration_ms) AS avg_ms,
            max(s.duration_ms) AS max_ms,
            count(*) FILTER (WHERE s.span_kind = 'llm') AS llm_calls,
            coalesce(sum(s.input_tokens) FILTER (WHERE s.span_kind = 'llm'), 0)::bigint
                AS input_tokens,
            coalesce(sum(s.output_tokens) FILTER (WHERE s.span_kind = 'llm'), 0)::bigint
                AS output_tokens,
            coalesce(sum(s.total_tokens) FILTER (WHERE s.span_kind = 'llm'), 0)::bigint
                AS total_tokens,
            array_agg(s.duration_ms) FILTER (WHERE s.duration_ms IS NOT NULL) AS durations
        FROM public.ml_observability_spans AS s
        WHERE s.start_time >= p_now - p_window
          AND s.start_time <= p_now
          AND (p_agent IS NULL OR s.agent_name = p_agent)
        GROUP BY s.agent_name
    ) AS g
    CROSS JOIN LATERAL (
        SELECT percentile_cont(ARRAY[0.50, 0.95, 0.99]::double precision[])
                   WITHIN GROUP (ORDER BY d.duration_ms) AS percentiles
        FROM unnest(g.durations) AS d(duration_ms)
    ) AS q
    ORDER BY g.agent_name COLLATE "C"
$fn$;

COMMENT ON FUNCTION public.ml_agent_latency_stats(interval, text, timestamptz) IS
    'Per-agent count, errors, avg/p50/p95/p99/max duration (percentile_cont), llm token sums '
    'and spans per minute for start_time in [p_now - p_window, p_now].';

-- One trace's totals, in one row: span and distinct-agent counts, errors, first start and last
-- end (a span still open counts with its start), and llm calls and tokens from llm spans only
-- (as in ml_agent_latency_stats). A trace with no spans gives zero counts and NULL times.
CREATE OR REPLACE FUNCTION public.ml_trace_summary(p_trace_id text)
RETURNS TABLE (
    span_count    bigint,
    agent_count   bigint,
    error_count   bigint,
    start_time    timestamptz,
    end_time      timestamptz,
    llm_calls     bigint,
    input_tokens  bigint,
    output_tokens bigint,
    total_tokens  bigint
)
LANGUAGE sql
STABLE
SET search_path = ''
AS $fn$
    SELECT
        count(*),
        count(DISTINCT s.agent_name),
        count(*) FILTER (WHERE s.status = 'error'),
        min(s.start_time),
        max(coalesce(s.end_time, s.start_time)),
        count(*) FILTER (WHERE s.span_kind = 'llm'),
        coalesce(sum(s.input_tokens) FILTER (WHERE s.span_kind = 'llm'), 0)::bigint,
        coalesce(sum(s.output_tokens) FILTER (WHERE s.span_kind = 'llm'), 0)::bigint,
        coalesce(sum(s.total_tokens) FILTER (WHERE s.span_kind = 'llm'), 0)::bigint
    FROM public.ml_observability_spans AS s
    WHERE s.trace_id = p_trace_id
$fn$;

COMMENT ON FUNCTION public.ml_trace_summary(text) IS
    'One trace: span, agent and error counts, first start, last end, llm calls and tokens.';

-- Window figures over EVERY span (optionally one agent's) with p_now - p_window <= start_time
-- <= p_now: the seed's QualityMetrics fields. successful = status 'completed', failed = status
-- 'error' (a span still 'started' counts in total_spans only). The p95 is percentile_cont over
-- all durations of the window, not an average of the agents' p95s; spans without a duration
-- are left out of the latencies, which are NULL when no span has one. Always one row.
CREATE OR REPLACE FUNCTION public.ml_window_summary(
    p_window interval,
    p_agent  text DEFAULT NULL,
    p_now    timestamptz DEFAULT now()
)
RETURNS TABLE (
    total_spans      bigint,
    successful_spans bigint,
    failed_spans     bigint,
    avg_latency_ms   double precision,
    p95_latency_ms   double precision
)
LANGUAGE sql
STABLE
SET search_path = ''
AS $fn$
    SELECT
        count(*),
        count(*) FILTER (WHERE s.status = 'completed'),
        count(*) FILTER (WHERE s.status = 'error'),
        avg(s.duration_ms),
        percentile_cont(0.95) WITHIN GROUP (ORDER BY s.duration_ms)
    FROM public.ml_observability_spans AS s
    WHERE s.start_time >= p_now - p_window
      AND s.start_time <= p_now
      AND (p_agent IS NULL OR s.agent_name = p_agent)
$fn$;

COMMENT ON FUNCTION public.ml_window_summary(interval, text, timestamptz) IS
    'One row for start_time in [p_now - p_window, p_now]: total, successful (completed) and '
    'failed (error) spans, mean and p95 (percentile_cont) duration over all of them.';

-- Retention dry run: how many spans ml_delete_old_spans would delete for the same arguments.
CREATE OR REPLACE FUNCTION public.ml_count_old_spans(
    p_older_than interval,
    p_now        timestamptz DEFAULT now()
)
RETURNS bigint
LANGUAGE sql
STABLE
SET search_path = ''
AS $fn$
    SELECT count(*)
    FROM public.ml_observability_spans AS s
    WHERE s.start_time < p_now - p_older_than
$fn$;

COMMENT ON FUNCTION public.ml_count_old_spans(interval, timestamptz) IS
    'Spans with start_time < p_now - p_older_than (what retention would delete; deletes none).';

-- Cost per agent for spans with p_now - p_window <= start_time <= p_now: one row per agent and
-- one row with agent_name NULL for the whole window. LLM spans only; a span without a price
-- (cost_usd NULL: unknown model) counts in unpriced_llm_calls, never as zero cost. Cost per
-- trace = the sum of a trace's priced LLM calls in the window; its p50/p95 are percentile_cont
-- over the traces with at least one priced call. cost_by_model: {model: USD}, priced calls only.
CREATE OR REPLACE FUNCTION public.ml_agent_cost_stats(
    p_window interval,
    p_agent  text DEFAULT NULL,
    p_now    timestamptz DEFAULT now()
)
RETURNS TABLE (
    agent_name          text,
    cost_usd            numeric,
    priced_llm_calls    bigint,
    unpriced_llm_calls  bigint,
    traces_with_cost    bigint,
    cost_per_trace_p50  double precision,
    cost_per_trace_p95  double precision,
    cost_by_model       jsonb
)
LANGUAGE sql
STABLE
SET search_path = ''
AS $fn$
    WITH llm AS (
        SELECT s.agent_name, s.trace_id, coalesce(s.llm_model, '(no model)') AS model, s.cost_usd
        FROM public.ml_observability_spans AS s
        WHERE s.span_kind = 'llm'
          AND s.start_time >= p_now - p_window
          AND s.start_time <= p_now
          AND (p_agent IS NULL OR s.agent_name = p_agent)
    ),
    scoped AS (  -- every call twice: under its agent and under the whole window (NULL)
        SELECT l.agent_name AS grp, l.trace_id, l.model, l.cost_usd FROM llm AS l
        UNION ALL
        SELECT NULL::text, l.trace_id, l.model, l.cost_usd FROM llm AS l
    ),
    totals AS (
        SELECT c.grp, coalesce(sum(c.cost_usd), 0) AS cost, count(c.cost_usd) AS priced,
               count(*) - count(c.cost_usd) AS unpriced
        FROM scoped AS c GROUP BY c.grp
    ),
    models AS (
        SELECT m.grp, jsonb_object_agg(m.model, m.cost) AS by_model
        FROM (SELECT c.grp, c.model, sum(c.cost_usd) AS cost FROM scoped AS c
              WHERE c.cost_usd IS NOT NULL GROUP BY c.grp, c.model) AS m
        GROUP BY m.grp
    ),
    traces AS (
        SELECT t.grp, count(*) AS traces,
               percentile_cont(ARRAY[0.50, 0.95]::double precision[])
                   WITHIN GROUP (ORDER BY t.cost) AS q
        FROM (SELECT c.grp, c.trace_id, sum(c.cost_usd)::double precision AS cost
              FROM scoped AS c WHERE c.cost_usd IS NOT NULL GROUP BY c.grp, c.trace_id) AS t
        GROUP BY t.grp
    )
    SELECT t.grp, t.cost, t.priced, t.unpriced, coalesce(r.traces, 0), r.q[1], r.q[2],
           coalesce(m.by_model, '{}'::jsonb)
    FROM totals AS t
    LEFT JOIN models AS m ON m.grp IS NOT DISTINCT FROM t.grp
    LEFT JOIN traces AS r ON r.grp IS NOT DISTINCT FROM t.grp
    ORDER BY t.grp COLLATE "C" NULLS FIRST
$fn$;

COMMENT ON FUNCTION public.ml_agent_cost_stats(interval, text, timestamptz) IS
    'Per-agent (and, agent_name NULL, whole-window) LLM cost in [p_now - p_window, p_now]: '
    'total, priced/unpriced calls, p50/p95 cost per trace, cost by model.';

-- Cost and token kinds of LLM spans in the window grouped by p_by: 'agent', 'model',
-- 'provider' or 'day' (the UTC date, YYYY-MM-DD). Sorted by key.
CREATE OR REPLACE FUNCTION public.ml_cost_breakdown(
    p_window interval,
    p_by     text DEFAULT 'agent',
    p_agent  text DEFAULT NULL,
    p_now    timestamptz DEFAULT now()
)
RETURNS TABLE (
    key                 text,
    llm_calls           bigint,
    priced_llm_calls    bigint,
    traces              bigint,
    input_tokens        bigint,
    output_tokens       bigint,
    cache_read_tokens   bigint,
    cache_write_tokens  bigint,
    reasoning_tokens    bigint,
    cost_usd            numeric
)
LANGUAGE plpgsql
STABLE
SET search_path = ''
AS $fn$
BEGIN
    IF p_by IS NULL OR p_by NOT IN ('agent', 'model', 'provider', 'day') THEN
        RAISE EXCEPTION 'p_by must be one of agent, model, provider, day; got %', p_by
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT g.k, count(*), count(g.cost_usd), count(DISTINCT g.trace_id),
           coalesce(sum(g.input_tokens), 0)::bigint, coalesce(sum(g.output_tokens), 0)::bigint,
           coalesce(sum(g.cache_read_tokens), 0)::bigint,
           coalesce(sum(g.cache_write_tokens), 0)::bigint,
           coalesce(sum(g.reasoning_tokens), 0)::bigint, coalesce(sum(g.cost_usd), 0)
    FROM (
        SELECT CASE p_by
                   WHEN 'agent' THEN s.agent_name
                   WHEN 'model' THEN coalesce(s.llm_model, '(no model)')
                   WHEN 'provider' THEN coalesce(s.provider, '(no provider)')
                   ELSE to_char((s.start_time AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD')
               END AS k,
               s.trace_id, s.input_tokens, s.output_tokens, s.cache_read_tokens,
               s.cache_write_tokens, s.reasoning_tokens, s.cost_usd
        FROM public.ml_observability_spans AS s
        WHERE s.span_kind = 'llm'
          AND s.start_time >= p_now - p_window
          AND s.start_time <= p_now
          AND (p_agent IS NULL OR s.agent_name = p_agent)
    ) AS g
    GROUP BY g.k
    ORDER BY g.k COLLATE "C";
END
$fn$;

COMMENT ON FUNCTION public.ml_cost_breakdown(interval, text, text, timestamptz) IS
    'LLM calls, traces, token kinds and cost in [p_now - p_window, p_now] grouped by agent, '
    'model, provider or UTC day.';

-- Retention: delete ONE batch, at most p_batch_size of the oldest spans that started before
-- p_now - p_older_than, and return how many were deleted. Callers loop, one call per
-- transaction (or per rpc request), until a call returns fewer than p_batch_size, passing the
-- same p_now each time so the loop ends even while new spans arrive. One batch per call keeps
-- each transaction short: row locks and WAL stay bounded, concurrent writers barely wait, and
-- a large backlog never runs into statement_timeout (which would roll back every batch).
-- SKIP LOCKED lets two concurrent retention runs share the work instead of waiting.
CREATE OR REPLACE FUNCTION public.ml_delete_old_spans(
    p_older_than interval,
    p_batch_size integer DEFAULT 1000,
    p_now        timestamptz DEFAULT now()
)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SET search_path = ''
AS $fn$
DECLARE
    v_deleted bigint;
BEGIN
    IF p_batch_size IS NULL OR p_batch_size < 1 THEN
        RAISE EXCEPTION 'p_batch_size must be a positive integer, got %', p_batch_size
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_older_than IS NULL OR p_older_than < interval '0' THEN
        RAISE EXCEPTION 'p_older_than must be a non-negative interval, got %', p_older_than
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM public.ml_observability_spans AS s
    WHERE s.id IN (
        SELECT o.id
        FROM public.ml_observability_spans AS o
        WHERE o.start_time < p_now - p_older_than
        ORDER BY o.start_time
        LIMIT p_batch_size
        FOR UPDATE SKIP LOCKED
    );
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    -- The running costs of traces that started before the cutoff go with their spans (the
    -- cost buckets stay, with the rollups).
    DELETE FROM public.ml_observability_trace_costs AS t WHERE t.slot < p_now - p_older_than;
    RETURN v_deleted;
END
$fn$;

COMMENT ON FUNCTION public.ml_delete_old_spans(interval, integer, timestamptz) IS
    'Delete one batch: at most p_batch_size of the oldest spans with start_time < '
    'p_now - p_older_than; returns the count. Call again (new transaction, same p_now) until '
    'it returns less than p_batch_size.';

-- ---------------------------------------------------------------------------------------------
-- View: the last 24 hours, per agent (same columns and numbers as the function)
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE VIEW public.v_agent_latency_summary
WITH (security_invoker = true) AS
SELECT
    stats.agent_name,
    stats.agent_tier,
    stats.count,
    stats.error_count,
    stats.error_rate,
    stats.avg_ms,
    stats.p50_ms,
    stats.p95_ms,
    stats.p99_ms,
    stats.max_ms,
    stats.llm_calls,
    stats.input_tokens,
    stats.output_tokens,
    stats.total_tokens,
    stats.spans_per_minute
FROM public.ml_agent_latency_stats(interval '24 hours') AS stats;

COMMENT ON VIEW public.v_agent_latency_summary IS
    'Per-agent latency, errors and llm tokens over the last 24 hours.';

-- ---------------------------------------------------------------------------------------------
-- Access: row-level security on; Supabase roles get grants and policies when they exist
-- ---------------------------------------------------------------------------------------------
ALTER TABLE public.ml_observability_spans ENABLE ROW LEVEL SECURITY;

REVOKE ALL ON FUNCTION public.ml_agent_latency_stats(interval, text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.ml_delete_old_spans(interval, integer, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.ml_agent_cost_stats(interval, text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.ml_cost_breakdown(interval, text, text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.ml_trace_summary(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.ml_window_summary(interval, text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.ml_count_old_spans(interval, timestamptz) FROM PUBLIC;

DO $roles$
BEGIN
    -- anon (the public API key): nothing at all. Supabase's default privileges grant every new
    -- table and function to anon, so revoke explicitly; with no grant the error is 42501.
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'anon') THEN
        REVOKE ALL ON TABLE public.ml_observability_spans FROM anon;
        REVOKE ALL ON TABLE public.v_agent_latency_summary FROM anon;
        REVOKE ALL ON FUNCTION public.ml_agent_latency_stats(interval, text, timestamptz)
            FROM anon;
        REVOKE ALL ON FUNCTION public.ml_delete_old_spans(interval, integer, timestamptz)
            FROM anon;
        REVOKE ALL ON FUNCTION public.ml_agent_cost_stats(interval, text, timestamptz)
            FROM anon;
        REVOKE ALL ON FUNCTION public.ml_cost_breakdown(interval, text, text, timestamptz)
            FROM anon;
        REVOKE ALL ON FUNCTION public.ml_trace_summary(text) FROM anon;
        REVOKE ALL ON FUNCTION public.ml_window_summary(interval, text, timestamptz)
            FROM anon;
        REVOKE ALL ON FUNCTION public.ml_count_old_spans(interval, timestamptz) FROM anon;
    END IF;

    -- authenticated: a read-only policy exists, but no grant by default
    -- (storage.supabase_authenticated_read = false); granting SELECT turns reading on.
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'authenticated') THEN
        REVOKE ALL ON TABLE public.ml_observability_spans FROM authenticated;
        REVOKE ALL ON TABLE public.v_agent_latency_summary FROM authenticated;
        REVOKE ALL ON FUNCTION public.ml_agent_latency_stats(interval, text, timestamptz)
            FROM authenticated;
        REVOKE ALL ON FUNCTION public.ml_delete_old_spans(interval, integer, timestamptz)
            FROM authenticated;
        REVOKE ALL ON FUNCTION public.ml_agent_cost_stats(interval, text, timestamptz)
            FROM authenticated;
        REVOKE ALL ON FUNCTION public.ml_cost_breakdown(interval, text, text, timestamptz)
            FROM authenticated;
        REVOKE ALL ON FUNCTION public.ml_trace_summary(text) FROM authenticated;
        REVOKE ALL ON FUNCTION public.ml_window_summary(interval, text, timestamptz)
            FROM authenticated;
        REVOKE ALL ON FUNCTION public.ml_count_old_spans(interval, timestamptz) FROM authenticated;
        DROP POLICY IF EXISTS ml_obs_spans_authenticated_read ON public.ml_observability_spans;
        CREATE POLICY ml_obs_spans_authenticated_read ON public.ml_observability_spans
            AS PERMISSIVE FOR SELECT TO authenticated USING (true);
    END IF;

    -- service_role (the backend's key): full access through its policy, not through BYPASSRLS.
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'service_role') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.ml_observability_spans
            TO service_role;
        GRANT SELECT ON TABLE public.v_agent_latency_summary TO service_role;
        GRANT EXECUTE ON FUNCTION public.ml_agent_latency_stats(interval, text, timestamptz)
            TO service_role;
        GRANT EXECUTE ON FUNCTION public.ml_delete_old_spans(interval, integer, timestamptz)
            TO service_role;
        GRANT EXECUTE ON FUNCTION public.ml_agent_cost_stats(interval, text, timestamptz)
            TO service_role;
        GRANT EXECUTE ON FUNCTION public.ml_cost_breakdown(interval, text, text, timestamptz)
            TO service_role;
        GRANT EXECUTE ON FUNCTION public.ml_trace_summary(text) TO service_role;
        GRANT EXECUTE ON FUNCTION public.ml_window_summary(interval, text, timestamptz)
            TO service_role;
        GRANT EXECUTE ON FUNCTION public.ml_count_old_spans(interval, timestamptz)
            TO service_role;
        DROP POLICY IF EXISTS ml_obs_spans_service_role_all ON public.ml_observability_spans;
        CREATE POLICY ml_obs_spans_service_role_all ON public.ml_observability_spans
            AS PERMISSIVE FOR ALL TO service_role USING (true) WITH CHECK (true);
    END IF;
END
$roles$;

-- ---------------------------------------------------------------------------------------------
-- Rollups (issue 15): per-minute and per-hour figures written with the spans
-- ---------------------------------------------------------------------------------------------
-- Window metrics read these instead of every span: O(slots x agents), not O(spans). A
-- statement-level trigger adds the rows an INSERT (or COPY) really inserted (its transition
-- table: a span skipped by ON CONFLICT DO NOTHING is not in it, so a replay never counts twice)
-- in the same transaction, whatever the path: psycopg, PostgREST (Supabase), plain SQL.
-- period_s: 60 (minute slots) or 3600 (hour slots); slot: the slot's start (UTC, date_bin).
-- Tokens, cost and llm_calls are from llm spans only, as in ml_agent_latency_stats. Model and
-- provider '' stand for none (a primary key cannot hold NULL).
-- Latency: a DDSketch-style histogram per slot and agent, relative accuracy a = 0.01:
-- bucket = ceil(ln(duration_ms) / ln(gamma)), gamma = (1 + a) / (1 - a); 0 ms counted apart.
-- Histograms merge by adding counts (see src/repositories/rollups.py for the read side).
-- ml_observability_rollup_sketches holds, per slot (1 minute, 10 minutes, 1 hour, 6 hours) and
-- agent, the agent's counts and tokens and its whole histogram packed in one row (counts of
-- the consecutive buckets low, low + 1, ...), so a 24 h window reads a few hundred rows
-- (src/repositories/sketch.py adds them up).
-- Rollups outlive span retention (ml_delete_old_spans leaves them); ml_delete_old_rollups
-- has its own age; ml_rebuild_rollups recomputes them from the spans.
CREATE TABLE IF NOT EXISTS public.ml_observability_rollups (
    period_s           integer NOT NULL CHECK (period_s IN (60, 3600)),
    slot               timestamptz NOT NULL,
    agent_name         text NOT NULL,
    llm_model          text NOT NULL DEFAULT '',
    provider           text NOT NULL DEFAULT '',
    agent_tier         smallint,
    span_count         bigint NOT NULL DEFAULT 0,
    error_count        bigint NOT NULL DEFAULT 0,
    completed_count    bigint NOT NULL DEFAULT 0,
    duration_count     bigint NOT NULL DEFAULT 0,
    duration_sum       double precision NOT NULL DEFAULT 0,
    duration_max       double precision,
    llm_calls          bigint NOT NULL DEFAULT 0,
    input_tokens       bigint NOT NULL DEFAULT 0,
    output_tokens      bigint NOT NULL DEFAULT 0,
    total_tokens       bigint NOT NULL DEFAULT 0,
    cache_read_tokens  bigint NOT NULL DEFAULT 0,
    cache_write_tokens bigint NOT NULL DEFAULT 0,
    reasoning_tokens   bigint NOT NULL DEFAULT 0,
    cost_usd           numeric NOT NULL DEFAULT 0,
    priced_calls       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (period_s, slot, agent_name, llm_model, provider)
);

-- The sketch helpers: dense counts from (bucket, count) pairs (NULL buckets skipped), the sum
-- of two dense sketches starting at different buckets, and the packed form the reads return:
-- big-endian unsigned 16-bit counts (32-bit or 64-bit ones if a count does not fit), one
-- Python integer per row on the client (src/repositories/sketch.py: the length says the
-- width, so rows packed 32-bit by earlier versions are read as they are).
CREATE OR REPLACE FUNCTION public.ml_sketch_counts(p_buckets integer[], p_counts bigint[])
RETURNS bigint[]
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = ''
AS $fn$
DECLARE
    v_low    integer;
    v_high   integer;
    v_counts bigint[];
    i        integer;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_buckets), 0) LOOP
        IF p_buckets[i] IS NOT NULL THEN
            v_low := least(v_low, p_buckets[i]);
            v_high := greatest(v_high, p_buckets[i]);
        END IF;
    END LOOP;
    IF v_low IS NULL THEN
        RETURN NULL;
    END IF;
    v_counts := array_fill(0::bigint, ARRAY[v_high - v_low + 1]);
    FOR i IN 1 .. cardinality(p_buckets) LOOP
        IF p_buckets[i] IS NOT NULL THEN
            v_counts[p_buckets[i] - v_low + 1] :=
                v_counts[p_buckets[i] - v_low + 1] + coalesce(p_counts[i], 0);
        END IF;
    END LOOP;
    RETURN v_counts;
END
$fn$;

-- PL/pgSQL: its arrays are changed in place, so adding a batch's few counts to a wide stored
-- sketch costs a step per bucket of the batch, not a rebuilt array.
CREATE OR REPLACE FUNCTION public.ml_sketch_add(
    p_low integer, p_counts bigint[], p_other_low integer, p_other bigint[]
)
RETURNS bigint[]
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = ''
AS $fn$
DECLARE
    v_sum    bigint[] := p_counts;
    v_more   integer;
    v_offset integer;
    v_count  bigint;
BEGIN
    IF p_counts IS NULL THEN
        RETURN p_other;
    ELSIF p_other IS NULL THEN
        RETURN p_counts;
    END IF;
    IF p_other_low < p_low THEN
        v_sum := array_fill(0::bigint, ARRAY[p_low - p_other_low]) || v_sum;
    END IF;
    v_more := p_other_low + cardinality(p_other) - (p_low + cardinality(p_counts));
    IF v_more > 0 THEN
        v_sum := v_sum || array_fill(0::bigint, ARRAY[v_more]);
    END IF;
    v_offset := p_other_low - least(p_low, p_other_low);
    FOREACH v_count IN ARRAY p_other LOOP
        v_offset := v_offset + 1;
        IF v_count <> 0 THEN
            v_sum[v_offset] := v_sum[v_offset] + v_count;
        END IF;
    END LOOP;
    RETURN v_sum;
END
$fn$;

-- unnest hands the elements to the aggregate in array order (one function scan, no sort:
-- an ORDER BY here costs a sort per row written, 3x the whole function). Every aggregate of a
-- query runs whatever CASE picks, so the rare wide packing is a subquery of its own (run only
-- when picked): three string_agg side by side cost 1.4x this one.
CREATE OR REPLACE FUNCTION public.ml_sketch_pack(p_counts bigint[])
RETURNS bytea
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = ''
AS $fn$
    SELECT CASE WHEN max(u.c) < 65536
                THEN string_agg(substring(int8send(u.c) FROM 7 FOR 2), ''::bytea)
                ELSE (SELECT CASE WHEN max(w.c) < 4294967296
                                  THEN string_agg(substring(int8send(w.c) FROM 5 FOR 4), ''::bytea)
                                  ELSE string_agg(int8send(w.c), ''::bytea) END
                      FROM unnest(p_counts) AS w(c)) END
    FROM unnest(p_counts) AS u(c)
$fn$;

CREATE TABLE IF NOT EXISTS public.ml_observability_rollup_sketches (
    period_s        integer NOT NULL CHECK (period_s IN (60, 600, 3600, 21600)),
    slot            timestamptz NOT NULL,
    agent_name      text NOT NULL,
    agent_tier      smallint,
    span_count      bigint NOT NULL DEFAULT 0,
    error_count     bigint NOT NULL DEFAULT 0,
    completed_count bigint NOT NULL DEFAULT 0,
    duration_count  bigint NOT NULL DEFAULT 0,
    duration_sum    double precision NOT NULL DEFAULT 0,
    duration_max    double precision,
    llm_calls       bigint NOT NULL DEFAULT 0,
    input_tokens    bigint NOT NULL DEFAULT 0,
    output_tokens   bigint NOT NULL DEFAULT 0,
    total_tokens    bigint NOT NULL DEFAULT 0,
    zero_count      bigint NOT NULL DEFAULT 0,
    low             integer,
    high            integer,
    counts          bigint[],
    packed          bytea GENERATED ALWAYS AS (public.ml_sketch_pack(counts)) STORED,
    PRIMARY KEY (period_s, slot, agent_name)
);
-- Rows up to a page stay inline and uncompressed: a read then copies `packed` as it is
-- instead of decompressing it (the default moves rows over ~2 kB to compressed TOAST).
ALTER TABLE public.ml_observability_rollup_sketches SET (toast_tuple_target = 8160);

COMMENT ON TABLE public.ml_observability_rollups IS
    'Per-minute (period_s 60) and per-hour (3600) span counts, errors, durations, llm tokens '
    'and cost per agent, model and provider; written with the spans, kept after them.';
COMMENT ON TABLE public.ml_observability_rollup_sketches IS
    'Per 1-minute, 10-minute, 1-hour and 6-hour slot and agent: counts, llm tokens and the '
    'latency histogram (counts of buckets low.., bucket = ceil(ln(duration_ms) / ln(1.01 / '
    '0.99)), 0 ms in zero_count); written with the spans, kept after them.';

-- The two upserts adding the spans of p_source (a relation or a parenthesised SELECT with the
-- span table's columns) to the rollups: [1] totals, [2] sketches (a few rows per agent: the
-- new spans' histogram per slot, added to the stored one). Rows are locked in key order
-- (ORDER BY), so two writers adding to the same slots wait for each other instead of
-- deadlocking.
CREATE OR REPLACE FUNCTION public.ml_rollup_statements(p_source text)
RETURNS text[]
LANGUAGE sql
IMMUTABLE
SET search_path = ''
AS $fn$
SELECT ARRAY[
    format($q$
INSERT INTO public.ml_observability_rollups AS r (
    period_s, slot, agent_name, llm_model, provider, agent_tier, span_count, error_count,
    completed_count, duration_count, duration_sum, duration_max, llm_calls, input_tokens,
    output_tokens, total_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
    cost_usd, priced_calls)
SELECT p.period_s,
       date_bin(p.step, s.start_time, timestamptz '2000-01-01 00:00:00+00'),
       s.agent_name, coalesce(s.llm_model, ''), coalesce(s.provider, ''),
       max(s.agent_tier), count(*),
       count(*) FILTER (WHERE s.status = 'error'),
       count(*) FILTER (WHERE s.status = 'completed'),
       count(s.duration_ms), coalesce(sum(s.duration_ms), 0), max(s.duration_ms),
       count(*) FILTER (WHERE s.span_kind = 'llm'),
       coalesce(sum(s.input_tokens) FILTER (WHERE s.span_kind = 'llm'), 0),
       coalesce(sum(s.output_tokens) FILTER (WHERE s.span_kind = 'llm'), 0),
       coalesce(sum(s.total_tokens) FILTER (WHERE s.span_kind = 'llm'), 0),
       coalesce(sum(s.cache_read_tokens) FILTER (WHERE s.span_kind = 'llm'), 0),
       coalesce(sum(s.cache_write_tokens) FILTER (WHERE s.span_kind = 'llm'), 0),
       coalesce(sum(s.reasoning_tokens) FILTER (WHERE s.span_kind = 'llm'), 0),
       coalesce(sum(s.cost_usd) FILTER (WHERE s.span_kind = 'llm'), 0),
       count(s.cost_usd) FILTER (WHERE s.span_kind = 'llm')
FROM %1$s AS s
CROSS JOIN (VALUES (60, interval '1 minute'), (3600, interval '1 hour')) AS p(period_s, step)
GROUP BY 1, 2, 3, 4, 5
ORDER BY 1, 2, 3, 4, 5
ON CONFLICT (period_s, slot, agent_name, llm_model, provider) DO UPDATE SET
    agent_tier = greatest(r.agent_tier, excluded.agent_tier),
    span_count = r.span_count + excluded.span_count,
    error_count = r.error_count + excluded.error_count,
    completed_count = r.completed_count + excluded.completed_count,
    duration_count = r.duration_count + excluded.duration_count,
    duration_sum = r.duration_sum + excluded.duration_sum,
    duration_max = greatest(r.duration_max, excluded.duration_max),
    llm_calls = r.llm_calls + excluded.llm_calls,
    input_tokens = r.input_tokens + excluded.input_tokens,
    output_tokens = r.output_tokens + excluded.output_tokens,
    total_tokens = r.total_tokens + excluded.total_tokens,
    cache_read_tokens = r.cache_read_tokens + excluded.cache_read_tokens,
    cache_write_tokens = r.cache_write_tokens + excluded.cache_write_tokens,
    reasoning_tokens = r.reasoning_tokens + excluded.reasoning_tokens,
    cost_usd = r.cost_usd + excluded.cost_usd,
    priced_calls = r.priced_calls + excluded.priced_calls
$q$, p_source),
    format($q$
INSERT INTO public.ml_observability_rollup_sketches AS k (
    period_s, slot, agent_name, agent_tier, span_count, error_count, completed_count,
    duration_count, duration_sum, duration_max, llm_calls, input_tokens, output_tokens,
    total_tokens, zero_count, low, high, counts)
SELECT g.period_s, g.slot, g.agent_name, max(g.agent_tier), sum(g.spans), sum(g.errors),
       sum(g.completed), sum(g.durations), sum(g.duration_sum), max(g.duration_max),
       sum(g.llm_calls), sum(g.input_tokens), sum(g.output_tokens), sum(g.total_tokens),
       sum(g.zeros), min(g.bucket), max(g.bucket),
       public.ml_sketch_counts(array_agg(g.bucket), array_agg(g.counted))
FROM (
    SELECT p.period_s,
           date_bin(p.step, s.start_time, timestamptz '2000-01-01 00:00:00+00') AS slot,
           s.agent_name,
           CASE WHEN s.duration_ms > 0
                THEN ceil(ln(s.duration_ms) / ln(1.01::float8 / 0.99::float8))::integer
           END AS bucket,
           max(s.agent_tier) AS agent_tier, count(*) AS spans,
           count(*) FILTER (WHERE s.status = 'error') AS errors,
           count(*) FILTER (WHERE s.status = 'completed') AS completed,
           count(s.duration_ms) AS durations, coalesce(sum(s.duration_ms), 0) AS duration_sum,
           max(s.duration_ms) AS duration_max,
           count(*) FILTER (WHERE s.span_kind = 'llm') AS llm_calls,
           coalesce(sum(s.input_tokens) FILTER (WHERE s.span_kind = 'llm'), 0) AS input_tokens,
           coalesce(sum(s.output_tokens) FILTER (WHERE s.span_kind = 'llm'), 0)
               AS output_tokens,
           coalesce(sum(s.total_tokens) FILTER (WHERE s.span_kind = 'llm'), 0) AS total_tokens,
           count(*) FILTER (WHERE s.duration_ms <= 0) AS zeros,
           count(*) FILTER (WHERE s.duration_ms > 0) AS counted
    FROM %1$s AS s
    CROSS JOIN (VALUES (60, interval '1 minute'), (600, interval '10 minutes'),
                       (3600, interval '1 hour'), (21600, interval '6 hours'))
        AS p(period_s, step)
    GROUP BY 1, 2, 3, 4
) AS g
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
ON CONFLICT (period_s, slot, agent_name) DO UPDATE SET
    agent_tier = greatest(k.agent_tier, excluded.agent_tier),
    span_count = k.span_count + excluded.span_count,
    error_count = k.error_count + excluded.error_count,
    completed_count = k.completed_count + excluded.completed_count,
    duration_count = k.duration_count + excluded.duration_count,
    duration_sum = k.duration_sum + excluded.duration_sum,
    duration_max = greatest(k.duration_max, excluded.duration_max),
    llm_calls = k.llm_calls + excluded.llm_calls,
    input_tokens = k.input_tokens + excluded.input_tokens,
    output_tokens = k.output_tokens + excluded.output_tokens,
    total_tokens = k.total_tokens + excluded.total_tokens,
    zero_count = k.zero_count + excluded.zero_count,
    low = least(k.low, excluded.low),
    high = greatest(k.high, excluded.high),
    counts = public.ml_sketch_add(k.low, k.counts, excluded.low, excluded.counts)
$q$, p_source)
]
$fn$;

-- The trigger: SECURITY DEFINER, so a role that may insert spans (service_role over
-- PostgREST) adds to the rollups without any grant on them.
CREATE OR REPLACE FUNCTION public.ml_rollup_new_spans()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $fn$
DECLARE
    v_statement text;
BEGIN
    FOREACH v_statement IN ARRAY public.ml_rollup_statements('new_spans') LOOP
        EXECUTE v_statement;
    END LOOP;
    EXECUTE public.ml_trace_cost_statement('new_spans');
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE TRIGGER ml_observability_spans_rollup
    AFTER INSERT ON public.ml_observability_spans
    REFERENCING NEW TABLE AS new_spans
    FOR EACH STATEMENT EXECUTE FUNCTION public.ml_rollup_new_spans();

-- Recompute the rollups from the spans that started at or after p_since (NULL: the oldest
-- span), from the start of that hour on (sketches: of that 6-hour slot, the largest sketch
-- slot); older rollups (spans already deleted) stay. Inserts wait meanwhile (SHARE lock), so
-- no span is counted twice or missed. Returns spans rolled up.
CREATE OR REPLACE FUNCTION public.ml_rebuild_rollups(p_since timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SET search_path = ''
AS $fn$
DECLARE
    v_from        timestamptz;
    v_sketch_from timestamptz;
    v_spans       bigint;
BEGIN
    LOCK TABLE public.ml_observability_spans IN SHARE MODE;
    v_from := date_bin(
        interval '1 hour',
        coalesce(p_since, (SELECT min(start_time) FROM public.ml_observability_spans)),
        timestamptz '2000-01-01 00:00:00+00'
    );
    IF v_from IS NULL THEN  -- no spans and no p_since: nothing to recompute
        RETURN 0;
    END IF;
    v_sketch_from := date_bin(interval '6 hours', v_from, timestamptz '2000-01-01 00:00:00+00');
    DELETE FROM public.ml_observability_rollups WHERE slot >= v_from;
    DELETE FROM public.ml_observability_rollup_sketches WHERE slot >= v_sketch_from;
    EXECUTE (public.ml_rollup_statements(format(
        '(SELECT * FROM public.ml_observability_spans WHERE start_time >= %L::timestamptz)',
        v_from
    )))[1];
    EXECUTE (public.ml_rollup_statements(format(
        '(SELECT * FROM public.ml_observability_spans WHERE start_time >= %L::timestamptz)',
        v_sketch_from
    )))[2];
    PERFORM public.ml_rebuild_trace_costs(v_from);
    SELECT count(*) INTO v_spans FROM public.ml_observability_spans WHERE start_time >= v_from;
    RETURN v_spans;
END
$fn$;

-- Rollup retention: delete the slots that started before p_now - p_older_than, and the
-- minute slots (period_s 60, and the sketches' 10-minute slots) before p_now -
-- p_minute_older_than (NULL: the same age); hour slots keep the trends, minute slots only
-- serve the edges of recent windows. Returns the number of rollup rows (both tables, and
-- the trace cost sketches) deleted. The two-argument version of an older schema is dropped
-- first (it would make two-argument calls ambiguous).
DROP FUNCTION IF EXISTS public.ml_delete_old_rollups(interval, timestamptz);
CREATE OR REPLACE FUNCTION public.ml_delete_old_rollups(
    p_older_than        interval,
    p_now               timestamptz DEFAULT now(),
    p_minute_older_than interval DEFAULT NULL
)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SET search_path = ''
AS $fn$
DECLARE
    v_rows    bigint;
    v_buckets bigint;
    v_costs   bigint;
    v_minutes timestamptz;
BEGIN
    IF p_older_than IS NULL OR p_older_than < interval '0' THEN
        RAISE EXCEPTION 'p_older_than must be a non-negative interval, got %', p_older_than
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_minute_older_than < interval '0' THEN
        RAISE EXCEPTION 'p_minute_older_than must be a non-negative interval or NULL, got %',
            p_minute_older_than USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_minutes := p_now - coalesce(p_minute_older_than, p_older_than);
    DELETE FROM public.ml_observability_rollups
    WHERE slot < p_now - p_older_than OR (period_s = 60 AND slot < v_minutes);
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    DELETE FROM public.ml_observability_rollup_sketches
    WHERE slot < p_now - p_older_than OR (period_s < 3600 AND slot < v_minutes);
    GET DIAGNOSTICS v_buckets = ROW_COUNT;
    DELETE FROM public.ml_observability_trace_cost_sketches
    WHERE slot < p_now - p_older_than OR (period_s < 3600 AND slot < v_minutes);
    GET DIAGNOSTICS v_costs = ROW_COUNT;
    RETURN v_rows + v_buckets + v_costs;
END
$fn$;

-- The window read: the window [p_start, p_end] comes split (rollups.split_window): raw spans
-- in [p_start, p_minute_from) and [p_minute_to, p_end], whole slots in between, the largest
-- that fit (minute, 10-minute, hour slots either side of the 6-hour ones). One row per sketch
-- row, plus per agent and latency bucket of the raw edges one row (packed: that bucket's
-- count); the client adds them up per agent. PL/pgSQL: its plan is kept per connection (a SQL
-- function with SET clauses is planned at every call), and generic from the first call
-- (plan_cache_mode): PostgreSQL would otherwise plan it afresh for a connection's first 5
-- calls (~0.6 ms each) before settling on the same plan. The read functions of earlier
-- versions (per-agent totals and a row per bucket) are dropped.
DROP FUNCTION IF EXISTS public.ml_rollup_totals(
    timestamptz, timestamptz, timestamptz, timestamptz, timestamptz, timestamptz, text);
DROP FUNCTION IF EXISTS public.ml_rollup_buckets(
    timestamptz, timestamptz, timestamptz, timestamptz, timestamptz, timestamptz, text);
CREATE OR REPLACE FUNCTION public.ml_rollup_window(
    p_start       timestamptz,
    p_minute_from timestamptz,
    p_ten_from    timestamptz,
    p_hour_from   timestamptz,
    p_six_from    timestamptz,
    p_six_to      timestamptz,
    p_hour_to     timestamptz,
    p_ten_to      timestamptz,
    p_minute_to   timestamptz,
    p_end         timestamptz,
    p_agent       text DEFAULT NULL
)
RETURNS TABLE (
    agent_name      text,
    agent_tier      smallint,
    span_count      bigint,
    error_count     bigint,
    completed_count bigint,
    duration_count  bigint,
    duration_sum    double precision,
    duration_max    double precision,
    llm_calls       bigint,
    input_tokens    bigint,
    output_tokens   bigint,
    total_tokens    bigint,
    zero_count      bigint,
    low             integer,
    high            integer,
    packed          bytea
)
LANGUAGE plpgsql
STABLE
SET search_path = ''
SET max_parallel_workers_per_gather = 0
SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    RETURN QUERY
    SELECT k.agent_name, k.agent_tier, k.span_count, k.error_count, k.completed_count,
           k.duration_count, k.duration_sum, k.duration_max, k.llm_calls, k.input_tokens,
           k.output_tokens, k.total_tokens, k.zero_count, k.low, k.high, k.packed
    FROM (VALUES (60, p_minute_from, p_ten_from), (600, p_ten_from, p_hour_from),
                 (3600, p_hour_from, p_six_from), (21600, p_six_from, p_six_to),
                 (3600, p_six_to, p_hour_to), (600, p_hour_to, p_ten_to),
                 (60, p_ten_to, p_minute_to)) AS r(period_s, slot_from, slot_to)
    JOIN public.ml_observability_rollup_sketches AS k
      ON k.period_s = r.period_s AND k.slot >= r.slot_from AND k.slot < r.slot_to
    WHERE r.slot_from < r.slot_to AND (p_agent IS NULL OR k.agent_name = p_agent)
    UNION ALL
    SELECT e.agent_name, max(e.agent_tier)::smallint, count(*),
           count(*) FILTER (WHERE e.status = 'error'),
           count(*) FILTER (WHERE e.status = 'completed'),
           count(e.duration_ms), coalesce(sum(e.duration_ms), 0)::double precision,
           max(e.duration_ms)::double precision,
           count(*) FILTER (WHERE e.span_kind = 'llm'),
           coalesce(sum(e.input_tokens) FILTER (WHERE e.span_kind = 'llm'), 0)::bigint,
           coalesce(sum(e.output_tokens) FILTER (WHERE e.span_kind = 'llm'), 0)::bigint,
           coalesce(sum(e.total_tokens) FILTER (WHERE e.span_kind = 'llm'), 0)::bigint,
           count(*) FILTER (WHERE e.duration_ms <= 0),
           e.bucket, e.bucket,
           CASE WHEN e.bucket IS NOT NULL THEN substring(int8send(count(*)) FROM 5 FOR 4) END
    FROM (
        SELECT s.agent_name, s.agent_tier, s.status, s.span_kind, s.duration_ms,
               s.input_tokens, s.output_tokens, s.total_tokens, s.start_time
        FROM public.ml_observability_spans AS s
        WHERE s.start_time >= p_start AND s.start_time < p_minute_from
        UNION ALL
        SELECT s.agent_name, s.agent_tier, s.status, s.span_kind, s.duration_ms,
               s.input_tokens, s.output_tokens, s.total_tokens, s.start_time
        FROM public.ml_observability_spans AS s
        WHERE s.start_time >= p_minute_to AND s.start_time <= p_end
    ) AS edge
    CROSS JOIN LATERAL (
        SELECT edge.*, CASE WHEN edge.duration_ms > 0
            THEN ceil(ln(edge.duration_ms) / ln(1.01::float8 / 0.99::float8))::integer
        END AS bucket
    ) AS e
    WHERE p_agent IS NULL OR e.agent_name = p_agent
    GROUP BY e.agent_name, e.bucket;
END
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Trace costs (issue 15): cost per trace p50/p95 without reading every LLM span
-- ---------------------------------------------------------------------------------------------
-- ml_observability_trace_costs keeps each trace's running cost (priced LLM calls only) per
-- grp: its agent, and '' for the whole window (every agent's calls of the trace). slot is the
-- minute of the earliest priced call in the batch that FIRST stored one for this (trace, grp);
-- it never moves. ml_observability_trace_cost_sketches counts traces per cost bucket, with the
-- latency sketch's bucket formula applied to USD: bucket = ceil(ln(cost) / ln(1.01 / 0.99)),
-- a zero cost in zero_count; packed like ml_observability_rollup_sketches (counts of buckets
-- low.., one row per 1-minute, 10-minute, 1-hour and 6-hour slot and grp), so a 24 h window
-- reads a few dozen rows per grp. Each insert moves a trace from bucket(old cost) to
-- bucket(new cost) (-1 / +1, added with ml_sketch_counts / ml_sketch_add: a stored count never
-- goes negative, a trace leaves only the bucket it was counted in, in its own slot), in the
-- rollup trigger, so the sketch of a window (whole minutes) gives p50/p95 within 1% and the
-- number of traces (trace_count). A trace counts in the minute its first priced call was
-- stored, whatever later calls add. Trace-cost rows go with the spans (ml_delete_old_spans);
-- sketch rows with the rollups (ml_delete_old_rollups); ml_rebuild_rollups recomputes both.
CREATE TABLE IF NOT EXISTS public.ml_observability_trace_costs (
    trace_id text NOT NULL,
    grp      text NOT NULL,
    slot     timestamptz NOT NULL,
    cost     numeric NOT NULL,
    PRIMARY KEY (trace_id, grp)
);

CREATE INDEX IF NOT EXISTS idx_ml_obs_trace_costs_slot
    ON public.ml_observability_trace_costs (slot);

CREATE TABLE IF NOT EXISTS public.ml_observability_trace_cost_sketches (
    period_s    integer NOT NULL CHECK (period_s IN (60, 600, 3600, 21600)),
    slot        timestamptz NOT NULL,
    grp         text NOT NULL,
    trace_count bigint NOT NULL DEFAULT 0,
    zero_count  bigint NOT NULL DEFAULT 0,
    low         integer,
    high        integer,
    counts      bigint[],
    packed      bytea GENERATED ALWAYS AS (public.ml_sketch_pack(counts)) STORED,
    PRIMARY KEY (period_s, slot, grp)
);
ALTER TABLE public.ml_observability_trace_cost_sketches SET (toast_tuple_target = 8160);

COMMENT ON TABLE public.ml_observability_trace_costs IS
    'Running cost of each trace per agent (grp) and over all agents (grp = ''''); slot: the '
    'minute its first priced LLM call was first stored. Deleted with the spans.';
COMMENT ON TABLE public.ml_observability_trace_cost_sketches IS
    'Per 1-minute, 10-minute, 1-hour and 6-hour slot and grp: traces per cost bucket (counts '
    'of buckets low.., bucket = ceil(ln(cost_usd) / ln(1.01 / 0.99)), zero costs in '
    'zero_count), traces in trace_count.';

-- The statement adding p_moves (a relation of (slot, grp, bucket, d): a trace into (+1) or out
-- of (-1) a cost bucket of its minute slot) to the sketch rows of the p_periods tiers: per row,
-- the moves' dense counts added to the stored ones; rows locked in key order.
CREATE OR REPLACE FUNCTION public.ml_cost_sketch_statement(
    p_moves text, p_periods integer[] DEFAULT ARRAY[60, 600, 3600, 21600]
)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = ''
AS $fn$
SELECT format($q$
INSERT INTO public.ml_observability_trace_cost_sketches AS k (
    period_s, slot, grp, trace_count, zero_count, low, high, counts)
SELECT g.period_s, g.slot, g.grp, sum(g.d),
       coalesce(sum(g.d) FILTER (WHERE g.bucket = -100000), 0), min(nullif(g.bucket, -100000)), max(nullif(g.bucket, -100000)),
       public.ml_sketch_counts(array_agg(nullif(g.bucket, -100000)), array_agg(g.d))
FROM (
    SELECT p.period_s,
           date_bin(make_interval(secs => p.period_s), m.slot,
                    timestamptz '2000-01-01 00:00:00+00') AS slot,
           m.grp, m.bucket, sum(m.d)::bigint AS d
    FROM %1$s AS m
    CROSS JOIN unnest(%2$L::integer[]) AS p(period_s)
    GROUP BY 1, 2, 3, 4
    HAVING sum(m.d) <> 0
) AS g
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
ON CONFLICT (period_s, slot, grp) DO UPDATE SET
    trace_count = k.trace_count + excluded.trace_count,
    zero_count = k.zero_count + excluded.zero_count,
    low = least(k.low, excluded.low),
    high = greatest(k.high, excluded.high),
    counts = public.ml_sketch_add(k.low, k.counts, excluded.low, excluded.counts)
$q$, p_moves, p_periods)
$fn$;

-- The cost bucket of a numeric USD expression, as SQL text (the statements above and below).
CREATE OR REPLACE FUNCTION public.ml_cost_bucket_sql(p_cost text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = ''
AS $fn$
SELECT format('CASE WHEN %1$s > 0 THEN ceil(ln((%1$s)::float8) / ln(1.01::float8 / 0.99::float8))'
              '::integer ELSE -100000 END', p_cost)
$fn$;

-- The statement adding the priced LLM calls of p_source (the trigger's transition table) to
-- the trace costs and moving each trace between cost buckets: one upsert returns each trace's
-- new cost (old = new - added; xmax = 0: the row was inserted), rows locked in key order.
CREATE OR REPLACE FUNCTION public.ml_trace_cost_statement(p_source text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = ''
AS $fn$
SELECT format($q$
WITH added AS (
    SELECT s.trace_id, g.grp, min(s.start_time) AS first_time, sum(s.cost_usd) AS cost
    FROM %1$s AS s
    CROSS JOIN LATERAL (VALUES (s.agent_name), ('')) AS g(grp)
    WHERE s.span_kind = 'llm' AND s.cost_usd IS NOT NULL
    GROUP BY 1, 2
),
upserted AS (
    INSERT INTO public.ml_observability_trace_costs AS t (trace_id, grp, slot, cost)
    SELECT a.trace_id, a.grp,
           date_bin(interval '1 minute', a.first_time, timestamptz '2000-01-01 00:00:00+00'),
           a.cost
    FROM added AS a
    ORDER BY 1, 2
    ON CONFLICT (trace_id, grp) DO UPDATE SET cost = t.cost + excluded.cost
    RETURNING t.trace_id, t.grp, t.slot, t.cost, (t.xmax = 0) AS inserted
),
moved AS (
    SELECT u.slot, u.grp, u.inserted, %2$s AS new_bucket, %3$s AS old_bucket
    FROM upserted AS u JOIN added AS a ON a.trace_id = u.trace_id AND a.grp = u.grp
),
moves AS (
    SELECT m.slot, m.grp, m.new_bucket AS bucket, 1 AS d FROM moved AS m
    WHERE m.inserted OR m.new_bucket <> m.old_bucket
    UNION ALL
    SELECT m.slot, m.grp, m.old_bucket, -1 FROM moved AS m
    WHERE NOT m.inserted AND m.new_bucket <> m.old_bucket
)
%4$s
$q$, p_source, public.ml_cost_bucket_sql('u.cost'), public.ml_cost_bucket_sql('(u.cost - a.cost)'),
     public.ml_cost_sketch_statement('moves'))
$fn$;

-- Recompute the trace costs of the spans that started at or after p_from (NULL: the oldest
-- span's hour), and the cost sketches from that hour's 6-hour slot on (the largest sketch
-- slot) from the trace costs. A trace whose row has an older slot keeps it (its cost already
-- holds the later calls).
CREATE OR REPLACE FUNCTION public.ml_rebuild_trace_costs(p_from timestamptz DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = ''
AS $fn$
DECLARE
    v_from timestamptz;
BEGIN
    v_from := date_bin(
        interval '1 hour',
        coalesce(p_from, (SELECT min(start_time) FROM public.ml_observability_spans)),
        timestamptz '2000-01-01 00:00:00+00'
    );
    IF v_from IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM public.ml_observability_trace_costs WHERE slot >= v_from;
    DELETE FROM public.ml_observability_trace_cost_sketches
    WHERE slot >= date_bin(interval '6 hours', v_from, timestamptz '2000-01-01 00:00:00+00');
    INSERT INTO public.ml_observability_trace_costs (trace_id, grp, slot, cost)
    SELECT s.trace_id, g.grp,
           date_bin(interval '1 minute', min(s.start_time), timestamptz '2000-01-01 00:00:00+00'),
           sum(s.cost_usd)
    FROM public.ml_observability_spans AS s
    CROSS JOIN LATERAL (VALUES (s.agent_name), ('')) AS g(grp)
    WHERE s.start_time >= v_from AND s.span_kind = 'llm' AND s.cost_usd IS NOT NULL
    GROUP BY 1, 2
    ON CONFLICT (trace_id, grp) DO NOTHING;
    EXECUTE public.ml_cost_sketch_statement(format(
        '(SELECT t.slot, t.grp, %s AS bucket, 1 AS d FROM public.ml_observability_trace_costs'
        ' AS t WHERE t.slot >= %L::timestamptz)',
        public.ml_cost_bucket_sql('t.cost'),
        date_bin(interval '6 hours', v_from, timestamptz '2000-01-01 00:00:00+00')
    ));
END
$fn$;

-- Cost of a split window (cost_rollups.cost_bounds), one row per agent and model (traces
-- NULL): cost, priced and all llm calls, from the minute and hour rollups and the raw edges;
-- then one row per cost sketch row (llm_model NULL) whose slot lies in the whole minutes
-- [p_trace_minute_from, p_trace_minute_to), split into the largest slots that fit
-- (rollups.split_window); the client adds them up per grp (src/repositories/sketch.py). One
-- index range scan per tier range: a join with a VALUES list of the ranges was planned as a
-- sequential scan of the whole sketch table when few ranges were non-empty (200k spans:
-- 79k rows scanned, ~50 ms).
-- PL/pgSQL so its plan is kept per session: a SQL function with SET clauses is planned again
-- at every call, which cost about as much as running it (200k spans: 15.9 -> 6.5 ms median);
-- planned generic from a connection's first call (plan_cache_mode), as ml_rollup_window.
-- The version of a row per cost bucket (11 arguments) is dropped.
DROP FUNCTION IF EXISTS public.ml_rollup_costs(
    timestamptz, timestamptz, timestamptz, timestamptz, timestamptz, timestamptz,
    timestamptz, timestamptz, timestamptz, timestamptz, text);
CREATE OR REPLACE FUNCTION public.ml_rollup_costs(
    p_start             timestamptz,
    p_minute_from       timestamptz,
    p_hour_from         timestamptz,
    p_hour_to           timestamptz,
    p_minute_to         timestamptz,
    p_end               timestamptz,
    p_trace_minute_from timestamptz,
    p_trace_ten_from    timestamptz,
    p_trace_hour_from   timestamptz,
    p_trace_six_from    timestamptz,
    p_trace_six_to      timestamptz,
    p_trace_hour_to     timestamptz,
    p_trace_ten_to      timestamptz,
    p_trace_minute_to   timestamptz,
    p_agent             text DEFAULT NULL
)
RETURNS TABLE (
    agent_name   text,
    llm_model    text,
    cost_usd     numeric,
    priced_calls bigint,
    llm_calls    bigint,
    traces       bigint,
    zero_count   bigint,
    low          integer,
    high         integer,
    packed       bytea
)
LANGUAGE plpgsql
STABLE
SET search_path = ''
SET max_parallel_workers_per_gather = 0
SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    RETURN QUERY
    WITH calls AS (
        SELECT r.agent_name, r.llm_model, r.cost_usd, r.priced_calls, r.llm_calls
        FROM public.ml_observability_rollups AS r
        WHERE r.period_s = 60 AND r.slot >= p_minute_from AND r.slot < p_hour_from
        UNION ALL
        SELECT r.agent_name, r.llm_model, r.cost_usd, r.priced_calls, r.llm_calls
        FROM public.ml_observability_rollups AS r
        WHERE r.period_s = 60 AND r.slot >= p_hour_to AND r.slot < p_minute_to
        UNION ALL
        SELECT r.agent_name, r.llm_model, r.cost_usd, r.priced_calls, r.llm_calls
        FROM public.ml_observability_rollups AS r
        WHERE r.period_s = 3600 AND r.slot >= p_hour_from AND r.slot < p_hour_to
        UNION ALL
        SELECT s.agent_name, coalesce(s.llm_model, ''), s.cost_usd,
               (s.cost_usd IS NOT NULL)::integer, 1
        FROM public.ml_observability_spans AS s
        WHERE s.span_kind = 'llm' AND s.start_time >= p_start AND s.start_time < p_minute_from
        UNION ALL
        SELECT s.agent_name, coalesce(s.llm_model, ''), s.cost_usd,
               (s.cost_usd IS NOT NULL)::integer, 1
        FROM public.ml_observability_spans AS s
        WHERE s.span_kind = 'llm' AND s.start_time >= p_minute_to AND s.start_time <= p_end
    )
    SELECT c.agent_name, c.llm_model, coalesce(sum(c.cost_usd), 0), sum(c.priced_calls)::bigint,
           sum(c.llm_calls)::bigint, NULL::bigint, NULL::bigint, NULL::integer, NULL::integer,
           NULL::bytea
    FROM calls AS c
    WHERE c.llm_calls > 0 AND (p_agent IS NULL OR c.agent_name = p_agent)
    GROUP BY c.agent_name, c.llm_model
    UNION ALL
    SELECT k.grp, NULL, NULL, NULL, NULL, k.trace_count, k.zero_count, k.low, k.high, k.packed
    FROM (
        SELECT k.grp, k.trace_count, k.zero_count, k.low, k.high, k.packed
        FROM public.ml_observability_trace_cost_sketches AS k
        WHERE k.period_s = 60 AND k.slot >= p_trace_minute_from AND k.slot < p_trace_ten_from
        UNION ALL
        SELECT k.grp, k.trace_count, k.zero_count, k.low, k.high, k.packed
        FROM public.ml_observability_trace_cost_sketches AS k
        WHERE k.period_s = 600 AND k.slot >= p_trace_ten_from AND k.slot < p_trace_hour_from
        UNION ALL
        SELECT k.grp, k.trace_count, k.zero_count, k.low, k.high, k.packed
        FROM public.ml_observability_trace_cost_sketches AS k
        WHERE k.period_s = 3600 AND k.slot >= p_trace_hour_from AND k.slot < p_trace_six_from
        UNION ALL
        SELECT k.grp, k.trace_count, k.zero_count, k.low, k.high, k.packed
        FROM public.ml_observability_trace_cost_sketches AS k
        WHERE k.period_s = 21600 AND k.slot >= p_trace_six_from AND k.slot < p_trace_six_to
        UNION ALL
        SELECT k.grp, k.trace_count, k.zero_count, k.low, k.high, k.packed
        FROM public.ml_observability_trace_cost_sketches AS k
        WHERE k.period_s = 3600 AND k.slot >= p_trace_six_to AND k.slot < p_trace_hour_to
        UNION ALL
        SELECT k.grp, k.trace_count, k.zero_count, k.low, k.high, k.packed
        FROM public.ml_observability_trace_cost_sketches AS k
        WHERE k.period_s = 600 AND k.slot >= p_trace_hour_to AND k.slot < p_trace_ten_to
        UNION ALL
        SELECT k.grp, k.trace_count, k.zero_count, k.low, k.high, k.packed
        FROM public.ml_observability_trace_cost_sketches AS k
        WHERE k.period_s = 60 AND k.slot >= p_trace_ten_to AND k.slot < p_trace_minute_to
    ) AS k
    WHERE k.trace_count > 0 AND (p_agent IS NULL OR k.grp = p_agent);
END
$fn$;

ALTER TABLE public.ml_observability_trace_costs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.ml_observability_trace_cost_sketches ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON FUNCTION public.ml_rebuild_trace_costs(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.ml_rollup_costs(
    timestamptz, timestamptz, timestamptz, timestamptz, timestamptz, timestamptz,
    timestamptz, timestamptz, timestamptz, timestamptz, timestamptz, timestamptz,
    timestamptz, timestamptz, text
) FROM PUBLIC;

DO $trace_cost_roles$
DECLARE
    v_role text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['anon', 'authenticated'] LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = v_role) THEN
            EXECUTE format('REVOKE ALL ON TABLE public.ml_observability_trace_costs FROM %I',
                           v_role);
            EXECUTE format('REVOKE ALL ON TABLE public.ml_observability_trace_cost_sketches '
                           'FROM %I', v_role);
            EXECUTE format('REVOKE ALL ON FUNCTION public.ml_rebuild_trace_costs(timestamptz) '
                           'FROM %I', v_role);
            EXECUTE format('REVOKE ALL ON FUNCTION public.ml_rollup_costs(timestamptz, '
                           'timestamptz, timestamptz, timestamptz, timestamptz, timestamptz, '
                           'timestamptz, timestamptz, timestamptz, timestamptz, timestamptz, '
                           'timestamptz, timestamptz, timestamptz, text) FROM %I', v_role);
        END IF;
    END LOOP;

    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'service_role') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.ml_observability_trace_costs
            TO service_role;
        GRANT SELECT, INSERT, UPDATE, DELETE
            ON TABLE public.ml_observability_trace_cost_sketches TO service_role;
        GRANT EXECUTE ON FUNCTION public.ml_rebuild_trace_costs(timestamptz) TO service_role;
        GRANT EXECUTE ON FUNCTION public.ml_rollup_costs(timestamptz, timestamptz, timestamptz,
            timestamptz, timestamptz, timestamptz, timestamptz, timestamptz, timestamptz,
            timestamptz, timestamptz, timestamptz, timestamptz, timestamptz, text)
            TO service_role;
        DROP POLICY IF EXISTS ml_obs_trace_costs_service_role_all
            ON public.ml_observability_trace_costs;
        CREATE POLICY ml_obs_trace_costs_service_role_all ON public.ml_observability_trace_costs
            AS PERMISSIVE FOR ALL TO service_role USING (true) WITH CHECK (true);
        DROP POLICY IF EXISTS ml_obs_trace_cost_sketches_service_role_all
            ON public.ml_observability_trace_cost_sketches;
        CREATE POLICY ml_obs_trace_cost_sketches_service_role_all
            ON public.ml_observability_trace_cost_sketches
            AS PERMISSIVE FOR ALL TO service_role USING (true) WITH CHECK (true);
    END IF;
END
$trace_cost_roles$;

ALTER TABLE public.ml_observability_rollups ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.ml_observability_rollup_sketches ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON FUNCTION public.ml_rollup_new_spans() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.ml_rebuild_rollups(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.ml_delete_old_rollups(interval, timestamptz, interval)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION public.ml_rollup_window(
    timestamptz, timestamptz, timestamptz, timestamptz, timestamptz, timestamptz, timestamptz,
    timestamptz, timestamptz, timestamptz, text
) FROM PUBLIC;

DO $rollup_roles$
DECLARE
    v_role text;
BEGIN
    -- anon and authenticated: nothing (Supabase's default privileges would grant them all).
    FOREACH v_role IN ARRAY ARRAY['anon', 'authenticated'] LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = v_role) THEN
            EXECUTE format('REVOKE ALL ON TABLE public.ml_observability_rollups FROM %I', v_role);
            EXECUTE format('REVOKE ALL ON TABLE public.ml_observability_rollup_sketches FROM %I',
                           v_role);
            EXECUTE format('REVOKE ALL ON FUNCTION public.ml_rebuild_rollups(timestamptz) '
                           'FROM %I', v_role);
            EXECUTE format('REVOKE ALL ON FUNCTION public.ml_delete_old_rollups(interval, '
                           'timestamptz, interval) FROM %I', v_role);
            EXECUTE format('REVOKE ALL ON FUNCTION public.ml_rollup_window(timestamptz, '
                           'timestamptz, timestamptz, timestamptz, timestamptz, timestamptz, '
                           'timestamptz, timestamptz, timestamptz, timestamptz, text) FROM %I',
                           v_role);
        END IF;
    END LOOP;

    -- service_role (the backend's key): reads, rebuilds and expires rollups.
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'service_role') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.ml_observability_rollups
            TO service_role;
        GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.ml_observability_rollup_sketches
            TO service_role;
        GRANT EXECUTE ON FUNCTION public.ml_rebuild_rollups(timestamptz) TO service_role;
        GRANT EXECUTE ON FUNCTION public.ml_delete_old_rollups(interval, timestamptz, interval)
            TO service_role;
        GRANT EXECUTE ON FUNCTION public.ml_rollup_window(timestamptz, timestamptz, timestamptz,
            timestamptz, timestamptz, timestamptz, timestamptz, timestamptz, timestamptz,
            timestamptz, text) TO service_role;
        DROP POLICY IF EXISTS ml_obs_rollups_service_role_all ON public.ml_observability_rollups;
        CREATE POLICY ml_obs_rollups_service_role_all ON public.ml_observability_rollups
            AS PERMISSIVE FOR ALL TO service_role USING (true) WITH CHECK (true);
        DROP POLICY IF EXISTS ml_obs_rollup_sketches_service_role_all
            ON public.ml_observability_rollup_sketches;
        CREATE POLICY ml_obs_rollup_sketches_service_role_all
            ON public.ml_observability_rollup_sketches
            AS PERMISSIVE FOR ALL TO service_role USING (true) WITH CHECK (true);
    END IF;
END
$rollup_roles$;

-- A database from before the sketches (a row per slot, agent and bucket) gets its rows packed
-- into sketches once, here: the totals per agent from the totals rows, the 10-minute and 6-hour
-- slots added up from the minute and hour ones (the rollups may outlive the spans, so they are
-- converted rather than recomputed). Then the old table goes.
DO $rollup_sketch_conversion$
BEGIN
    IF to_regclass('public.ml_observability_rollup_buckets') IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO public.ml_observability_rollup_sketches AS k (
        period_s, slot, agent_name, agent_tier, span_count, error_count, completed_count,
        duration_count, duration_sum, duration_max, llm_calls, input_tokens, output_tokens,
        total_tokens, zero_count, low, high, counts)
    WITH tiers (source, period_s, step) AS (
        VALUES (60, 60, interval '1 minute'), (60, 600, interval '10 minutes'),
               (3600, 3600, interval '1 hour'), (3600, 21600, interval '6 hours')
    ),
    totals AS (
        SELECT t.period_s,
               date_bin(t.step, r.slot, timestamptz '2000-01-01 00:00:00+00') AS slot,
               r.agent_name, max(r.agent_tier) AS agent_tier, sum(r.span_count) AS spans,
               sum(r.error_count) AS errors, sum(r.completed_count) AS completed,
               sum(r.duration_count) AS durations, sum(r.duration_sum) AS duration_sum,
               max(r.duration_max) AS duration_max, sum(r.llm_calls) AS llm_calls,
               sum(r.input_tokens) AS input_tokens, sum(r.output_tokens) AS output_tokens,
               sum(r.total_tokens) AS total_tokens
        FROM public.ml_observability_rollups AS r
        JOIN tiers AS t ON t.source = r.period_s
        GROUP BY 1, 2, 3
    ),
    buckets AS (
        SELECT t.period_s,
               date_bin(t.step, b.slot, timestamptz '2000-01-01 00:00:00+00') AS slot,
               b.agent_name, nullif(b.bucket, -100000) AS bucket,
               sum(b.count) FILTER (WHERE b.bucket <> -100000)::bigint AS counted,
               coalesce(sum(b.count) FILTER (WHERE b.bucket = -100000), 0) AS zeros
        FROM public.ml_observability_rollup_buckets AS b
        JOIN tiers AS t ON t.source = b.period_s
        GROUP BY 1, 2, 3, 4
    ),
    histograms AS (
        SELECT h.period_s, h.slot, h.agent_name, sum(h.zeros) AS zeros, min(h.bucket) AS low,
               max(h.bucket) AS high,
               public.ml_sketch_counts(array_agg(h.bucket), array_agg(h.counted)) AS counts
        FROM buckets AS h
        GROUP BY 1, 2, 3
    )
    SELECT g.period_s, g.slot, g.agent_name, g.agent_tier, g.spans, g.errors, g.completed,
           g.durations, g.duration_sum, g.duration_max, g.llm_calls, g.input_tokens,
           g.output_tokens, g.total_tokens, coalesce(h.zeros, 0), h.low, h.high, h.counts
    FROM totals AS g
    LEFT JOIN histograms AS h USING (period_s, slot, agent_name)
    ON CONFLICT (period_s, slot, agent_name) DO NOTHING;
    DROP TABLE public.ml_observability_rollup_buckets;
END
$rollup_sketch_conversion$;

-- A database whose spans predate the rollups gets them computed once, here.
DO $rollup_backfill$
BEGIN
    IF (NOT EXISTS (SELECT 1 FROM public.ml_observability_rollups)
        OR NOT EXISTS (SELECT 1 FROM public.ml_observability_rollup_sketches))
       AND EXISTS (SELECT 1 FROM public.ml_observability_spans) THEN
        PERFORM public.ml_rebuild_rollups(NULL);
    END IF;
END
$rollup_backfill$;

-- A database from before the packed cost sketch (a row per minute or hour slot, grp and cost
-- bucket) gets its rows packed once, here: minute rows into 1-minute and 10-minute sketches,
-- hour rows into 1-hour and 6-hour ones (the sketch outlives the spans and trace costs, so it is
-- converted rather than recomputed). Then the old table goes.
DO $trace_cost_sketch_conversion$
BEGIN
    IF to_regclass('public.ml_observability_trace_cost_buckets') IS NULL THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.ml_observability_trace_cost_sketches) THEN
        EXECUTE public.ml_cost_sketch_statement(
            '(SELECT b.slot, b.grp, b.bucket, b.count AS d'
            ' FROM public.ml_observability_trace_cost_buckets AS b WHERE b.period_s = 60)',
            ARRAY[60, 600]);
        EXECUTE public.ml_cost_sketch_statement(
            '(SELECT b.slot, b.grp, b.bucket, b.count AS d'
            ' FROM public.ml_observability_trace_cost_buckets AS b WHERE b.period_s = 3600)',
            ARRAY[3600, 21600]);
    END IF;
    DROP TABLE public.ml_observability_trace_cost_buckets;
END
$trace_cost_sketch_conversion$;

-- A database whose rollups predate the trace costs gets them computed once, here.
DO $trace_cost_backfill$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM public.ml_observability_trace_costs)
       AND NOT EXISTS (SELECT 1 FROM public.ml_observability_trace_cost_sketches)
       AND EXISTS (SELECT 1 FROM public.ml_observability_spans) THEN
        PERFORM public.ml_rebuild_trace_costs(NULL);
    END IF;
END
$trace_cost_backfill$;
