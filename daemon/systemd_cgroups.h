// Cgroup drivers for placing containers: cgroupfs (containerd's default) and
// systemd (kubelet --cgroup-driver=systemd, containerd SystemdCgroup = true).
//
// Which driver a cgroup parent uses is decided the way containerd decides it
// (pkg/cri: getCgroupsPath): a parent whose last path element ends in
// ".slice" is a systemd slice, anything else a cgroupfs path. One parent, one
// driver: warmpool never mixes them for a pod.
//
// With the systemd driver every cgroup change of a container goes through
// systemd's D-Bus API (sd-bus, on /run/systemd/private as root, else the
// system bus):
//   - a container lives in the transient scope containerd/runc make for it,
//     `cri-containerd-<id>.scope`, with Delegate=yes, in the pod's slice;
//   - its resources are unit properties (CPUWeight, CPUQuotaPerSecUSec,
//     CPUQuotaPeriodUSec, MemoryMax, MemorySwapMax), which systemd writes to
//     v1 or v2 files as the host has them; a resource systemd cannot express
//     here (cpuset, hugepages, unified) is an error, so the hand-off rolls
//     back and the pod starts cold;
//   - only the v1 hierarchies systemd does not manage (freezer, cpuset,
//     net_cls, perf_event, ...) are joined by file I/O, as runc's systemd
//     driver does, at the same path as the scope.
// Moving a container whose scope already exists under that name (a pool
// entry's container keeps its id) is two steps, because a unit name is
// unique: its processes go to a temporary scope `warmpool-move-<id>.scope`
// in the pod's slice, the emptied old scope is stopped, then the final scope
// is started with the processes and the temporary one stopped.
//
// Pool entries under a slice pool parent ("warmpool.slice") get one slice
// per pool and per entry (see PoolSlicePath), so an entry's containers are
// still one subtree to freeze; those slices are stopped through systemd.
//
// Threading: SdBusSystemd serialises its calls (one connection, one mutex);
// ContainerCgroups and DriverEntryCgroups may be used from any thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cri_runtime_v1.pb.h"
#include "daemon/cgroups.h"
#include "daemon/pool_manager.h"

namespace warmpool {

// ---- naming (pure functions; containerd's and runc's conventions) ----------

// Whether `cgroup_parent` names a systemd slice (containerd's test: the last
// path element ends in ".slice").
bool IsSystemdSlice(const std::string& cgroup_parent);
// The slice unit a systemd cgroup parent names: its last path element.
std::string SliceUnitName(const std::string& cgroup_parent);
// A slice's cgroup path below systemd's root, as systemd and runc expand it:
// "kubepods-burstable-pod1.slice" ->
// "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice";
// "-.slice" -> "/". InvalidArgument for a name that is not a slice, has an
// empty dash component or a '/'.
absl::StatusOr<std::string> ExpandSlice(const std::string& slice);
// "cri-containerd-<id>.scope": the unit containerd's CRI plugin gives a
// container with runc's systemd driver.
std::string ContainerScopeName(const std::string& container_id);
// The temporary scope of a two-step move.
std::string MoveScopeName(const std::string& container_id);
// The container id of a scope name ("cri-containerd-<id>.scope"), or the
// name itself when it is not one (cgroupfs children are ids already).
std::string ContainerIdOfCgroup(const std::string& cgroup_name);
// systemd's escaping of one slice name component ('-' -> "\x2d", and every
// byte outside [a-zA-Z0-9:_.] as \xNN).
std::string EscapeSliceComponent(const std::string& component);
// Cgroup paths of a pool and an entry under a slice pool parent:
// ("warmpool.slice", "py-api") -> "/warmpool.slice/warmpool-py\x2dapi.slice";
// entry: ".../warmpool-py\x2dapi-<entry>.slice". Callers pass these as the
// entry's cgroup_parent; containerd takes the last element.
std::string PoolSlicePath(const std::string& parent_slice, const std::string& pool);
std::string EntrySlicePath(const std::string& parent_slice, const std::string& pool,
                           const std::string& entry_id);
// The entry id of an entry slice's cgroup name (the last dash component).
std::string EntryIdOfSlice(const std::string& slice_cgroup_name);

// ---- unit properties ---------------------------------------------------------

struct UnitProperty {
  std::string name;
  std::variant<uint64_t, bool, std::string, std::vector<uint32_t>> value;
  bool operator==(const UnitProperty& o) const { return name == o.name && value == o.value; }
};

// The properties that give a scope `resources`, named and converted as
// runc's systemd driver does for the host's cgroup version:
//   v2: cpu shares -> CPUWeight by runc's formula, MemoryMax, MemorySwapMax;
//   v1 (`cgroup_v1`): CPUShares and MemoryLimit as they are (systemd's own
//       weight conversion would give cpu.shares another value than the cold
//       path); a swap limit other than "none beyond memory" (swap limit =
//       memory limit, what kubelet sends) is kUnimplemented, since systemd
//       has no v1 memsw property;
// both: quota per second rounded up to 10 ms. Zero / unset fields give no
// property. Fields systemd cannot set here (cpuset_cpus/mems,
// hugepage_limits, unified) are kUnimplemented naming the field.
// oom_score_adj is not a cgroup resource (ignored).
absl::StatusOr<std::vector<UnitProperty>> ResourceProperties(
    const v1::LinuxContainerResources& resources, bool cgroup_v1 = false);
// runc's conversion of v1 cpu shares to a v2 / systemd CPUWeight (0 -> 0).
uint64_t CpuSharesToWeight(uint64_t shares);
// What containerd gives a pod's sandbox (pause) container: cpu shares 2.
v1::LinuxContainerResources SandboxContainerResources();

// ---- systemd's manager API -------------------------------------------------

// The part of org.freedesktop.systemd1.Manager warmpool uses. Every call
// waits until systemd finished the job it started.
class SystemdManager {
 public:
  virtual ~SystemdManager() = default;
  // StartTransientUnit(name, "fail", properties) and wait for the job.
  virtual absl::Status StartTransientUnit(const std::string& name,
                                          const std::vector<UnitProperty>& properties) = 0;
  // StopUnit(name, "replace") and wait; a unit systemd does not have is OK.
  // A failed unit is reset so its name is free again.
  virtual absl::Status StopUnit(const std::string& name) = 0;
  // Whether systemd has the unit loaded now.
  virtual absl::StatusOr<bool> HasUnit(const std::string& name) = 0;
  // SetUnitProperties(name, runtime = true, properties): systemd writes
  // them to the unit's cgroup at once (no job).
  virtual absl::Status SetUnitProperties(const std::string& name,
                                         const std::vector<UnitProperty>& properties) = 0;
};

// SystemdManager over sd-bus. Connects on first use (and again after an
// error): /run/systemd/private when root, else the system bus.
class SdBusSystemd final : public SystemdManager {
 public:
  SdBusSystemd();
  ~SdBusSystemd() override;
  void set_job_timeout(std::chrono::milliseconds t) { job_timeout_ = t; }

  absl::Status StartTransientUnit(const std::string& name,
                                  const std::vector<UnitProperty>& properties) override;
  absl::Status StopUnit(const std::string& name) override;
  absl::StatusOr<bool> HasUnit(const std::string& name) override;
  absl::Status SetUnitProperties(const std::string& name,
                                 const std::vector<UnitProperty>& properties) override;

 private:
  struct Bus;
  absl::Status ConnectLocked();
  absl::Status WaitJobLocked(const std::string& job, const std::string& what);
  void DropLocked();

  std::mutex mu_;
  std::unique_ptr<Bus> bus_;  // guarded by mu_
  std::chrono::milliseconds job_timeout_{10000};
};

// ---- the one place that places containers -------------------------------

// Puts a container's processes into the pod's cgroup parent with the driver
// the parent names, and undoes it. Used by the sandbox hand-off and by the
// adoption of pre-started containers.
class ContainerCgroups {
 public:
  // `cgroups` must outlive the object; `systemd` may be null (then a slice
  // parent is FailedPrecondition) and must outlive it otherwise.
  ContainerCgroups(Cgroups* cgroups, SystemdManager* systemd);

  // Where container `id` lives under `parent`: "<parent>/<id>" (cgroupfs) or
  // "<systemd root><expanded slice>/cri-containerd-<id>.scope" (systemd).
  absl::StatusOr<std::string> ContainerCgroup(const std::string& parent,
                                              const std::string& id) const;
  // Moves every process of the cgroup `from` (a container's cgroup in a pool
  // entry) to container `id`'s cgroup under `parent` and applies `resources`
  // (null: none; with cgroupfs they are not applied here, as before).
  // `frozen`: the processes are frozen and must stay so; they go into a
  // freezer cgroup frozen before they arrive (with systemd: the v1 freezer
  // at the scope's path, which systemd does not manage; kUnimplemented on a
  // v2 freezer). On error what was moved stays where it got to: call
  // RemoveMoved after destroying the processes.
  absl::Status MoveContainer(const std::string& from, const std::string& parent,
                             const std::string& id, bool is_sandbox,
                             const v1::LinuxContainerResources* resources, bool frozen = false);
  // Gives container `id` under `parent` kubelet's `resources`: cgroupfs
  // files (Cgroups::ApplyLimits), or its scope's unit properties through
  // systemd (ResourceProperties; what systemd cannot express is an error).
  // oom_score_adj is not a cgroup resource (ignored).
  absl::Status ApplyResources(const std::string& parent, const std::string& id,
                              const v1::LinuxContainerResources& resources);
  // Removes what MoveContainer made for `id` under `parent` (units through
  // systemd, then the cgroups left in hierarchies systemd does not manage).
  // Idempotent; processes still inside are kFailedPrecondition.
  absl::Status RemoveMoved(const std::string& parent, const std::string& id);
  // Removes a pool entry's (or pool's) cgroup tree: a slice is stopped
  // through systemd first.
  absl::Status RemoveTree(const std::string& path);

  // Cgroup path of systemd's root ("" when systemd's -.slice is the
  // hierarchy root), from PID 1's cgroup as runc computes it.
  const std::string& systemd_root() const { return systemd_root_; }
  void set_systemd_root(std::string root) { systemd_root_ = std::move(root); }
  // Whether systemd sets resources in v1 hierarchies here (a v1 cpu or
  // memory hierarchy is mounted): which unit properties ResourceProperties
  // names.
  bool cgroup_v1() const {
    return cgroups_->layout().v1.count("memory") > 0 || cgroups_->layout().v1.count("cpu") > 0;
  }

 private:
  absl::Status MoveToScope(const std::string& from, const std::string& parent,
                           const std::string& id, bool is_sandbox,
                           const v1::LinuxContainerResources* resources, bool frozen);
  // Joins `pids` to `path` in every hierarchy where they are not there yet.
  absl::Status JoinOtherHierarchies(const std::vector<pid_t>& pids, const std::string& path);

  Cgroups* cgroups_;
  SystemdManager* systemd_;
  std::string systemd_root_;
};

// The pool manager's EntryCgroups for either driver: slices are stopped
// through systemd, everything else is Cgroups.
class DriverEntryCgroups final : public EntryCgroups {
 public:
  DriverEntryCgroups(Cgroups* cgroups, ContainerCgroups* containers)
      : kernel_(cgroups), containers_(containers) {}
  absl::Status Freeze(const std::string& path) override { return kernel_.Freeze(path); }
  absl::Status Thaw(const std::string& path) override { return kernel_.Thaw(path); }
  absl::StatusOr<bool> IsFrozen(const std::string& path) override { return kernel_.IsFrozen(path); }
  absl::StatusOr<uint64_t> MemoryUsage(const std::string& path) override {
    return kernel_.MemoryUsage(path);
  }
  absl::Status RemoveTree(const std::string& path) override {
    return containers_->RemoveTree(path);
  }
  std::vector<std::string> Children(const std::string& path) override {
    return kernel_.Children(path);
  }

 private:
  KernelEntryCgroups kernel_;
  ContainerCgroups* containers_;
};

}  // namespace warmpool
