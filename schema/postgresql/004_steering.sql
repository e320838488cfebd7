-- Steering by people: a parked task is never claimed; a task assigned to an agent is claimed by
-- that agent only (NULL: any suitable agent). See coordinator/steering.py.
ALTER TABLE tasks ADD COLUMN parked BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE tasks ADD COLUMN assigned_agent BIGINT REFERENCES agents(id) ON DELETE SET NULL;
