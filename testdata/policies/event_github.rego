# Swarm's GitHub example, in Swarm's own (Rego v0) syntax: sluice reads it
# as it is.
package event

src[s] {
	input.data.bucket == "github-audit-logs"
	startswith(input.data.name, "github/")
	s := {"parser": "json", "compress": "gzip", "schema": "github_audit"}
}
