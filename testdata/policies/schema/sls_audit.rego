# SLS audit logs to Splunk: what the common SLS-to-Splunk script does — keep
# the audit_log topic, take the time from __time__, send the rest as the
# event — but as a valid HEC event (that script sends no `event` field,
# which Splunk refuses). No sink is named: the transform sends it to the
# node's only Splunk sink.
package schema.sls_audit

log contains {
	"timestamp": to_number(input.__time__),
	"data": object.remove(input, ["__time__"]),
	"sourcetype": "sls:audit",
	"source": sprintf("sls:%s", [object.get(input, "__source__", "")]),
} if {
	input.__topic__ == "audit_log"
}
