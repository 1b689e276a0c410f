"""The pytest side: the plugin (options, selection, outcomes, report) and the lab fixtures."""
