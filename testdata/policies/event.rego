# How to read a source event. For an SLS log group the input is
# {project, logstore, shard, topic, source, tags}; for a GCS object it is
# Swarm's {cs: {bucket, name}, size, created_at, digests, data}.
package event

# SLS audit logstores are read with the sls_audit schema.
src contains {"parser": "sls", "schema": "sls_audit"} if {
	input.logstore == "audit"
}
