package schema.github_audit_test

import data.schema.github_audit

entry := {
	"@timestamp": 1732480000123,
	"_document_id": "2ZEl5hGZ9NZ1ZmBvUN6CXQ",
	"action": "repo.create",
	"actor": "octocat",
}

test_row_for_bigquery if {
	out := github_audit.log with input as entry
	count(out) == 1
	some o in out
	o.dataset == "github"
	o.table == "audit"
	o.id == "2ZEl5hGZ9NZ1ZmBvUN6CXQ"
	o.timestamp == 1732480000.123
	o.data == {"_document_id": "2ZEl5hGZ9NZ1ZmBvUN6CXQ", "action": "repo.create", "actor": "octocat"}
}
