#pragma once

// Fail points: named places in warmpoold where a test can make the daemon
// die by SIGKILL, to check that a crash at exactly that step is recovered
// (test/integration/crash_points_test.cc).
//
// If the environment variable WARMPOOL_FAILPOINT equals a point's name when
// the daemon starts, reaching that point logs one line and raises SIGKILL on
// the whole process. The variable is read once, at the first call (main calls
// ArmedFailPoint() at start-up); afterwards every MaybeFail is one compare
// against a cached string, nothing when it is unset.
//
// NEVER set WARMPOOL_FAILPOINT in production: it exists for tests only, and
// warmpoold warns at start-up when it is set.
//
// The points (each names the step just completed; see daemon/handoff.h):
//   handoff.claimed     the "claimed" record is written; nothing moved yet
//   handoff.moved       processes are in kubelet's cgroups, the entry's own
//                       cgroups not yet removed, no identity set
//   handoff.identity    hostname and resolv.conf are kubelet's; the "done"
//                       record is not written
//   handoff.recorded    the "done" record is durable; kubelet has no answer
//   container.linked    a pre-started container's log is at kubelet's path
//   container.mounted   kubelet's mounts are in the container; no record
//   container.recorded  the adoption is durable; kubelet has no answer

#include <string>
#include <string_view>

namespace warmpool {

// The armed point's name, "" when WARMPOOL_FAILPOINT is unset or empty.
// Thread-safe; reads the environment on its first call only.
const std::string& ArmedFailPoint();

// Dies by SIGKILL (after one log line) if `name` is the armed point; returns
// otherwise. Thread-safe.
void MaybeFail(std::string_view name);

}  // namespace warmpool
