"""The world the service lives in: the lab, its hosts, mocks, witnesses, proxies and targets."""
