package schema.sls_audit_test

import data.schema.sls_audit

audit := {
	"__time__": "1732480000",
	"__topic__": "audit_log",
	"__source__": "10.0.0.7",
	"__tag__:__hostname__": "ecs-1",
	"user": "alice",
	"action": "DeleteBucket",
}

test_keeps_audit_log if {
	out := sls_audit.log with input as audit
	count(out) == 1
	some o in out
	o.timestamp == 1732480000
	o.sourcetype == "sls:audit"
	o.source == "sls:10.0.0.7"
	o.data == object.remove(audit, ["__time__"])
}

test_drops_other_topics if {
	count(sls_audit.log) == 0 with input as object.union(audit, {"__topic__": "operation_log"})
}

test_drops_logs_without_topic if {
	count(sls_audit.log) == 0 with input as object.remove(audit, ["__topic__"])
}
