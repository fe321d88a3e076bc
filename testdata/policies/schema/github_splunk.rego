# GitHub audit log entries (read from GCS) as Splunk events: what sluice dev
# uses for its GCS stand-in, which has no BigQuery next to it. The time is
# GitHub's @timestamp (milliseconds); the rest is the event.
package schema.github_splunk

log contains {
	"timestamp": input["@timestamp"] / 1000,
	"data": object.remove(input, ["@timestamp"]),
	"sourcetype": "github:audit",
	"source": "gcs",
}
