-- Steering by people: a parked task is never claimed; a task assigned to an agent is claimed by
-- that agent only (NULL: any suitable agent). See coordinator/steering.py.
ALTER TABLE tasks ADD COLUMN parked INTEGER NOT NULL DEFAULT 0 CHECK (parked IN (0, 1));
ALTER TABLE tasks ADD COLUMN assigned_agent INTEGER REFERENCES agents(id) ON DELETE SET NULL;
