//! Fencing agents and topology for the failover manager (issue 7; not built yet).
