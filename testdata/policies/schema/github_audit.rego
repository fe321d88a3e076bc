# Swarm's GitHub audit log example (Rego v0 syntax, unchanged): one JSON
# line of a GitHub audit log export becomes one BigQuery row.
package schema.github_audit

log[d] {
	d := {
		"dataset": "github",
		"table": "audit",
		"id": input._document_id,
		"timestamp": input["@timestamp"] / 1000,
		"data": object.remove(input, ["@timestamp"]),
	}
}
