-- Agent sessions are read from the audit log (one per lease, see coordinator/sessions.py): the
-- sessions table, which nothing wrote, and the cost column that pointed at it go.
ALTER TABLE agent_costs DROP COLUMN session_id;
DROP TABLE sessions;
