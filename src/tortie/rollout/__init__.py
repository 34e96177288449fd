"""Rollout tooling: the seed how-to's manual steps done for the user — manifest rewrites
(``manifest``, ``kubedns``), cluster preflight checks and the IPv6-only migration."""
