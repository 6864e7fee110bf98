// Cgroup operations warmpool needs on a pool entry: freeze and thaw (verified
// by reading the kernel's state back), list its tasks, read its memory and CPU
// usage, create and remove its cgroup in every hierarchy.
//
// Paths are cgroup paths relative to a hierarchy's root ("/warmpool/py-api/e1"),
// the same string in every hierarchy. Both cgroup v1 (freezer.state) and v2
// (cgroup.freeze / cgroup.events) are supported; on a hybrid host (v1
// controllers plus cgroup2 at /sys/fs/cgroup/unified) either freezer can be
// chosen.
//
// Backends. Reads and writes of control files go through libcgroup 2.0 for
// every hierarchy libcgroup knows at the mount point the layout names, and
// through plain file I/O for the others. libcgroup knows:
//   - each v1 controller hierarchy (freezer, memory, cpuacct, ...);
//   - the cgroup2 hierarchy only through a v2 controller it found listed in
//     the cgroup2 root's cgroup.controllers (on the hybrid CI host that is
//     only "hugetlb"); the core v2 files (cgroup.freeze, cgroup.events,
//     cgroup.procs) are addressed as values of that controller. When the
//     cgroup2 root lists no controller (hybrid host with every controller
//     bound to v1), libcgroup ignores the mount and file I/O is used;
//   - never a named v1 hierarchy such as name=systemd (file I/O);
//   - nothing of a layout a test points at a temporary tree (file I/O), which
//     is how the logic is unit-tested without root.
// Directory walks, mkdir, rmdir, reading a cgroup's processes and moving
// processes (cgroup.procs) are file I/O everywhere: the hand-off does them
// on kubelet's clock and libcgroup's calls cost ~1.5x the syscalls they wrap
// (cgroups.cc says why at each place).
//
// Threading: a Cgroups object may be used from any number of threads. All
// libcgroup calls of the process are serialised through one mutex (libcgroup
// keeps global state and is not fully thread-safe); cgroup_init() runs once.
// Freeze/Thaw of the same path from two threads at once is the caller's bug
// (the pool's state machine owns an entry's freezer). The setters below are
// configuration: call them before the object is shared between threads.
//
// Errors are absl::Status with the cgroup path, the file, the backend and the
// libcgroup code or errno text. A cgroup that does not exist is kNotFound.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace warmpool {

enum class CgroupVersion { kV1, kV2 };

// Where the cgroup hierarchies are mounted. Detected from mountinfo, or given
// by tests (pointing at a temporary tree).
struct CgroupLayout {
  // v1 controller -> mount point, e.g. "freezer" -> "/sys/fs/cgroup/freezer",
  // "name=systemd" -> "/sys/fs/cgroup/systemd". Co-mounted controllers
  // ("cpu,cpuacct") appear once per controller with the same mount point.
  std::map<std::string, std::string> v1;
  // cgroup2 mount point ("/sys/fs/cgroup" or "/sys/fs/cgroup/unified"), or ""
  // if cgroup2 is not mounted.
  std::string unified;
  // Some cgroup or cgroup2 mount carries "favordynmods" (mount option, or
  // the kernel's cgroup_favordynmods= / CONFIG_CGROUP_FAVOR_DYNMODS, which
  // show as that option). The flag is global to the kernel: with it, moving
  // a process between cgroups no longer waits for an RCU grace period.
  bool favordynmods = false;

  // Parses a /proc/PID/mountinfo file. For a hierarchy mounted more than once
  // the first mount whose root is "/" wins (else the first one). No cgroup
  // mount at all is kNotFound; an unreadable file is an error.
  static absl::StatusOr<CgroupLayout> Detect(
      const std::string& mountinfo_path = "/proc/self/mountinfo");

  // cgroup2 is mounted and no v1 hierarchy is.
  bool v2_only() const { return !unified.empty() && v1.empty(); }

  // Every distinct mount point (v1 hierarchies, then unified), each once.
  std::vector<std::string> MountPoints() const;
};

// From Linux 6.0 on, writing cgroup.procs takes cgroup_threadgroup_rwsem for
// writing, which waits for an RCU grace period (4-16 ms at HZ=250) unless a
// cgroup mount has favordynmods; before 6.0 the kernel always took the cheap
// path. cgroup2 takes the option on remount; v1 hierarchies only when
// mounted, or from cgroup_favordynmods= on the kernel command line (6.7+).
// A hand-off moves its processes once, so on such a node every hit pays one
// grace period. Returns the advice for the operator, or "" when moves are
// cheap. kernel_release is uname -r ("6.1.0-18-amd64").
std::string SlowCgroupMoveAdvice(const CgroupLayout& layout, const std::string& kernel_release);

class Cgroups {
 public:
  // Decides per hierarchy whether libcgroup can serve it (see the file
  // comment). Calls cgroup_init() once per process; if that fails every
  // hierarchy is served by file I/O and init_status() says why.
  explicit Cgroups(CgroupLayout layout);

  const CgroupLayout& layout() const { return layout_; }
  // The result of the process's one cgroup_init().
  absl::Status init_status() const;
  // Whether the hierarchy of v1 controller `controller` (or "unified" for the
  // cgroup2 hierarchy) is read and written through libcgroup.
  bool UsesLibcgroup(const std::string& controller) const;
  // One line for logs: each hierarchy and its backend.
  std::string DescribeBackends() const;

  // Which freezer Freeze/Thaw/IsFrozen/Pids use: kV2 on a v2-only host, the
  // v1 freezer when a v1 freezer hierarchy is mounted, else kV2.
  CgroupVersion freezer_version() const { return freezer_version_; }
  void set_freezer_version(CgroupVersion version) { freezer_version_ = version; }

  // How long Freeze/Thaw wait for the kernel to report the new state.
  void set_state_timeout(std::chrono::milliseconds timeout) { state_timeout_ = timeout; }

  // Freezes every task of the subtree at `path` and returns once the kernel
  // reports the cgroup frozen (v1 freezer.state FROZEN, not FREEZING; v2
  // cgroup.events "frozen 1"). Polls with growing intervals up to the state
  // timeout; on v1 the FROZEN write is repeated while FREEZING. On timeout the
  // cgroup is thawed again and kDeadlineExceeded names the last state seen.
  absl::Status Freeze(const std::string& path);
  // Thaws and returns once the kernel reports THAWED / "frozen 0". A cgroup
  // frozen through an ancestor stays frozen: kDeadlineExceeded.
  absl::Status Thaw(const std::string& path);
  // Frozen as the kernel reports it now (FREEZING counts as not frozen).
  absl::StatusOr<bool> IsFrozen(const std::string& path);

  // Every process (cgroup.procs) in the subtree at `path`, in the hierarchy
  // the freezer uses, sorted, without duplicates.
  absl::StatusOr<std::vector<pid_t>> Pids(const std::string& path);
  // Memory charged to the subtree: v1 memory.usage_in_bytes when a v1 memory
  // hierarchy is mounted, else v2 memory.current.
  absl::StatusOr<uint64_t> MemoryUsage(const std::string& path);
  // CPU time used by the subtree in ns: v1 cpuacct.usage when a v1 cpuacct
  // hierarchy is mounted, else v2 cpu.stat usage_usec * 1000.
  absl::StatusOr<uint64_t> CpuUsageNanos(const std::string& path);

  // The working set as cAdvisor and kubelet compute it: memory usage minus
  // inactive file cache (v1 memory.stat total_inactive_file, v2
  // inactive_file), never below 0.
  absl::StatusOr<uint64_t> MemoryWorkingSet(const std::string& path);

  // A container's CRI resource limits on the cgroup at `path`, as runc
  // applies them: v1 cpu.shares, cpu.cfs_period_us, cpu.cfs_quota_us,
  // memory.limit_in_bytes; v2 cpu.weight (from shares, runc's formula),
  // cpu.max, memory.max. 0 leaves a CPU value alone; quota <= 0 and
  // memory_limit 0 mean unlimited.
  struct Limits {
    int64_t cpu_shares = 0;
    int64_t cpu_quota = 0;
    int64_t cpu_period = 0;
    int64_t memory_limit_bytes = 0;
  };
  absl::Status ApplyLimits(const std::string& path, const Limits& limits);

  // Removes the subtree at `path`, leaves first, in EVERY hierarchy (v1,
  // named v1 and unified). A hierarchy where it does not exist is fine, so
  // this is idempotent. A cgroup that still has tasks is kFailedPrecondition
  // naming it and its pids; every hierarchy is still attempted and all
  // failures are reported.
  absl::Status RemoveTree(const std::string& path);
  // Moves every process of the cgroup `from` (itself, not its subtree) into
  // `to` (which must exist: Create it first), in every hierarchy where
  // `from` exists. On v1 memory the destination gets
  // memory.move_charge_at_immigrate = 3 first, so the charge moves with the
  // tasks where the kernel still has that knob (newer kernels removed it:
  // EINVAL, ignored; v2 never moves charges: init-time memory stays with
  // `from`).
  // Frozen tasks moved into a thawed v1 freezer cgroup thaw.
  absl::Status MoveProcs(const std::string& from, const std::string& to);
  // mkdir -p of `path` in every hierarchy. In a v1 cpuset hierarchy each new
  // level inherits its parent's cpuset.cpus and cpuset.mems (empty ones
  // would refuse every task). Enables no v2 controller in subtree_control.
  absl::Status Create(const std::string& path);
  // mkdir -p of `path` in the v1 freezer hierarchy only, frozen: where tasks
  // that must stay frozen go when another hierarchy's cgroup is systemd's to
  // make. kUnimplemented on a v2 freezer (cgroup.freeze lives in the cgroup
  // systemd makes, which cannot be frozen before the tasks arrive).
  absl::Status CreateFrozen(const std::string& path);

 private:
  // One mounted hierarchy and how it is reached.
  struct Hierarchy {
    std::string label;  // "freezer", "cpu,cpuacct", "name=systemd", "unified".
    std::string mount;  // Mount point.
    std::string libcg;  // libcgroup controller name to address it by; "" = file I/O.
    bool v2 = false;
  };

  const Hierarchy* Find(const std::string& controller) const;
  absl::StatusOr<const Hierarchy*> FreezerHierarchy() const;
  std::string FsPath(const Hierarchy& h, const std::string& path) const;

  absl::StatusOr<std::string> ReadFile(const Hierarchy& h, const std::string& path,
                                       const std::string& file) const;
  absl::Status WriteFile(const Hierarchy& h, const std::string& path, const std::string& file,
                         const std::string& value) const;
  // The file I/O backend of ReadFile/WriteFile, for any hierarchy.
  absl::StatusOr<std::string> ReadFileIo(const Hierarchy& h, const std::string& path,
                                         const std::string& file) const;
  absl::Status WriteFileIo(const Hierarchy& h, const std::string& path, const std::string& file,
                           const std::string& value) const;
  absl::StatusOr<std::vector<pid_t>> Procs(const Hierarchy& h, const std::string& path) const;
  absl::StatusOr<std::string> FreezerState(const Hierarchy& h, const std::string& path) const;
  absl::Status SetFrozen(const std::string& path, bool frozen);
  absl::Status RemoveIn(const Hierarchy& h, const std::string& path) const;
  absl::Status CreateIn(const Hierarchy& h, const std::string& path) const;

  CgroupLayout layout_;
  std::vector<Hierarchy> hierarchies_;           // One per distinct mount point.
  std::map<std::string, size_t> by_controller_;  // Controller / "unified" -> index.
  CgroupVersion freezer_version_ = CgroupVersion::kV2;
  std::chrono::milliseconds state_timeout_{2000};
};

}  // namespace warmpool
