"""Mock Testkube control plane: the tool endpoints, RBAC, audit log and a request journal."""
