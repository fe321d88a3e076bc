package schema.github_splunk_test

import data.schema.github_splunk

test_event_for_splunk if {
	out := github_splunk.log with input as {"@timestamp": 1732480000123, "action": "repo.create", "actor": "octocat"}
	count(out) == 1
	some o in out
	o.timestamp == 1732480000.123
	o.sourcetype == "github:audit"
	o.data == {"action": "repo.create", "actor": "octocat"}
}
