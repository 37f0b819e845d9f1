-- A run's totals were re-aggregated from all its job rows on every update of a started job:
-- twice per job (its start, its finish), so a run of N jobs read N² rows (a 500-job run
-- spent a fifth of its time there). A job that starts, or that finishes (its usage set on a
-- row that counted none, its start unchanged), only adds to the totals, as an insert does;
-- any other change that touches a counted column still re-aggregates.

DROP TRIGGER insights_run_totals_upd;

CREATE TRIGGER insights_run_totals_add
AFTER UPDATE OF run_id, pipeline, started_at, cpu_user, cpu_system, peak_rss_kb ON jobs
WHEN NEW.started_at IS NOT NULL AND OLD.run_id IS NEW.run_id AND OLD.pipeline IS NEW.pipeline
     AND (OLD.started_at IS NULL OR (OLD.started_at IS NEW.started_at
                                     AND OLD.cpu_user + OLD.cpu_system IS NULL AND OLD.peak_rss_kb IS NULL))
BEGIN
    INSERT INTO insights_run_totals VALUES (
        NEW.run_id, NEW.pipeline, NEW.started_at, NEW.cpu_user + NEW.cpu_system, NEW.peak_rss_kb / 1024.0)
    ON CONFLICT DO UPDATE SET
        started_at = MIN(started_at, excluded.started_at),
        cpu_seconds = CASE WHEN cpu_seconds IS NULL THEN excluded.cpu_seconds
                           ELSE cpu_seconds + IFNULL(excluded.cpu_seconds, 0) END,
        peak_rss_mb = CASE WHEN peak_rss_mb IS NULL THEN excluded.peak_rss_mb
                           ELSE MAX(peak_rss_mb, IFNULL(excluded.peak_rss_mb, peak_rss_mb)) END;
END;

CREATE TRIGGER insights_run_totals_upd
AFTER UPDATE OF run_id, pipeline, started_at, cpu_user, cpu_system, peak_rss_kb ON jobs
WHEN (NEW.started_at IS NOT NULL OR OLD.started_at IS NOT NULL)
     AND NOT (NEW.started_at IS NOT NULL AND OLD.run_id IS NEW.run_id AND OLD.pipeline IS NEW.pipeline
              AND (OLD.started_at IS NULL OR (OLD.started_at IS NEW.started_at
                                              AND OLD.cpu_user + OLD.cpu_system IS NULL AND OLD.peak_rss_kb IS NULL)))
BEGIN
    DELETE FROM insights_run_totals WHERE run_id = OLD.run_id;
    INSERT OR REPLACE INTO insights_run_totals
    SELECT NEW.run_id, NEW.pipeline, MIN(started_at), SUM(cpu_user + cpu_system), MAX(peak_rss_kb) / 1024.0
      FROM jobs WHERE run_id = NEW.run_id AND started_at IS NOT NULL HAVING COUNT(*) > 0;
END;
