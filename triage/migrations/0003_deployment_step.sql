-- A canary ramps in place: the deployment keeps its id and start, and `step_started_at` marks when
-- its current share began, so each step is judged on the decisions made at that share only.
ALTER TABLE triage.deployments ADD COLUMN step_started_at timestamptz NOT NULL DEFAULT now();
UPDATE triage.deployments SET step_started_at = started_at;
