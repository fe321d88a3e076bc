package event_test

import data.event

test_sls_audit_logstore if {
	event.src == {{"parser": "sls", "schema": "sls_audit"}} with input as {"project": "p", "logstore": "audit", "shard": 0, "topic": "audit_log"}
}

test_github_object if {
	some s in event.src with input as {"data": {"bucket": "github-audit-logs", "name": "github/2024/11/24/00.json.gz"}}
	s.schema == "github_audit"
	s.compress == "gzip"
}

test_other_logstore_unread if {
	count(event.src) == 0 with input as {"project": "p", "logstore": "metrics"}
}
