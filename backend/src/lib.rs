//! Back-end tier: mail service instances and the failover manager (issues 6 and 8; not built yet).
