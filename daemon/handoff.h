#pragma once

// The hand-off: kubelet's RunPodSandbox served by a frozen pool entry.
//
// On a hit (the matcher says an entry of the pod's pool can serve the
// request exactly as asked, see daemon/matcher.h), on a worker thread:
//   1. claim the oldest frozen entry (it leaves the pool for good; the pool
//      refills) and record the claim durably (phase "claimed");
//   2. move every process of the entry into kubelet's cgroup_parent, one
//      cgroup per container as containerd's cgroupfs driver lays them out
//      (<cgroup_parent>/<container id>; v1 memory charges move with them
//      where the kernel still has memory.move_charge_at_immigrate), and
//      thaw (the entry's emptied cgroups are removed after the answer);
//   3. set kubelet's hostname in the sandbox's UTS namespace and rewrite the
//      hostname and resolv.conf files containerd keeps for the sandbox (the
//      ones it bind-mounts into the pod's containers) from kubelet's config;
//   4. record the hand-off (phase "done", kubelet's full request, the time)
//      and only then answer kubelet with the entry's sandbox id.
// Any failure rolls back (the entry is destroyed, nothing it had stays) and
// the request goes upstream unchanged: a pod is never broken by warmpool.
// A miss forwards at once, on the calling thread, and logs one line with the
// first mismatching field.
//
// Reads show an adopted sandbox as kubelet made it (daemon/read_filter.h);
// RemovePodSandbox of an adopted sandbox passes through, then its record and
// moved cgroups go.
//
// Recovery (Recover, before the pools start): a record in phase "done" is
// an adopted pod again (dropped if containerd no longer has its sandbox); a
// record stopped earlier is a hand-off kubelet never got an answer for: its
// sandbox is removed, its cgroups too, then the record.
//
// Cgroup drivers: a cgroup_parent that is a systemd slice moves each
// container into its `cri-containerd-<id>.scope` in that slice through
// systemd (daemon/systemd_cgroups.h), given set_container_cgroups with a
// systemd connection; a cgroupfs path moves it by cgroupfs. Every later
// cgroup step of an adopted container (freeze state, resources, stats,
// removal) goes to where that placement put it, through the same driver:
// resources of a scope are its unit properties, set through systemd.
//
//
// App pools (daemon/handoff_containers.cc). At RunPodSandbox the entry's
// pre-started containers move, still frozen, into their own cgroups under
// kubelet's cgroup_parent (<cgroup_parent>/<container id>, or their scope
// in the pod's slice, as the cold path would place them) and are recorded as
// unclaimed. kubelet's CreateContainer
// in that sandbox whose config the matcher accepts for the pre-started
// container of the same name (MatchContainer against the pool's current
// template, which must still be the one the entry was made from) adopts it:
//   1. its log is hard-linked to kubelet's log path, and the pool's log path
//      becomes a symlink to kubelet's, so containerd's shim keeps writing the
//      same file and a rotation (rename + ReopenContainerLog) reopens
//      kubelet's path;
//   2. kubelet's mounts are bind-mounted into its mount namespace;
//   3. kubelet's resources are applied to its cgroup and oom_score_adj;
//   4. the adoption is recorded durably, then kubelet gets its id.
// StartContainer thaws it. A CreateContainer the matcher refuses goes
// upstream (a cold container in the adopted sandbox) and the pre-started
// container of that name is removed; unclaimed ones are removed
// kUnclaimedTimeout after the hand-off, or at StopPodSandbox.
// containerd keeps measuring and updating the pool's (removed) cgroup of an
// adopted container, so ContainerStats and UpdateContainerResources of one
// are answered here, from and on the cgroup its processes are in.

#include <absl/status/status.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cri/rewrite.h"
#include "daemon/cgroups.h"
#include "daemon/decisions.h"
#include "daemon/late_network.h"
#include "daemon/pool_manager.h"
#include "daemon/pool_objects.h"
#include "daemon/runtime_client.h"
#include "daemon/state_store.h"
#include "daemon/step_timer.h"
#include "daemon/systemd_cgroups.h"

namespace warmpool {

inline int64_t UnixNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
inline std::string PodNameOf(const ::runtime::v1::PodSandboxConfig& c) {
  return c.metadata().namespace_() + "/" + c.metadata().name();
}

// How kubelet must see the adopted container `c` of record `r`.
AdoptedContainerView ContainerViewOf(const AdoptionRecord& r, const AdoptionRecord::Container& c);

class Handoff final : public cri::RewritePolicy {
 public:
  // All pointers must outlive the object. `containerd_root` is containerd's
  // root directory (the CRI plugin keeps sandbox files under it); "" = ask
  // containerd.
  Handoff(PoolManager* pools, PoolObjects* objects, StateStore* store, Cgroups* cgroups,
          RuntimeClient* runtime, std::string containerd_root);
  ~Handoff() override;

  // Where containers are placed (cgroupfs or systemd); before Recover. The
  // default knows cgroupfs only. `placement` must outlive the object.
  void set_container_cgroups(ContainerCgroups* placement) { placement_ = placement; }
  // network = "late" pools (daemon/late_network.h): binds the pod's network
  // at hand-off and releases it at StopPodSandbox / RemovePodSandbox and in
  // recovery. Without it (null), late pools' sandboxes are handed out with
  // the placeholder network: set before the first call.
  void SetLateNetwork(LateNetwork* network) { late_ = network; }

  // Before the pools start: see the file comment.
  absl::Status Recover();

  // RunPodSandbox, StopPodSandbox and RemovePodSandbox; null for every
  // other method.
  std::unique_ptr<cri::CallRewriter> ForMethod(const std::string& method) override;

  // Hits and misses since start, by reason code ("hit" for hits).
  std::map<std::string, uint64_t> Counts();
  // Every decision on a RunPodSandbox (warmpoolctl explain, metrics).
  const DecisionLog& decisions() const { return decisions_; }

  // How long an adopted pod's unclaimed pre-started containers are kept
  // for kubelet's CreateContainer calls.
  static constexpr std::chrono::seconds kUnclaimedTimeout{60};

 private:
  class RunRewriter;
  class RemoveRewriter;
  class ContainerCallRewriter;

  // A pre-started container of an adopted sandbox nobody claimed yet.
  using Prestarted = PrestartedContainer;
  struct Unclaimed {
    std::string sandbox_id;
    std::vector<Prestarted> containers;
    std::chrono::steady_clock::time_point reap_at;
  };

  // handoff_containers.cc
  void DecideCreate(const grpc::ByteBuffer& request, cri::CallRewriter::DecideCallback done);
  void DecideStart(const grpc::ByteBuffer& request, cri::CallRewriter::DecideCallback done);
  void DecideStopContainer(const grpc::ByteBuffer& request,
                           cri::CallRewriter::DecideCallback done);
  void DecideUpdateResources(const grpc::ByteBuffer& request,
                             cri::CallRewriter::DecideCallback done);
  void DecideContainerStats(const grpc::ByteBuffer& request,
                            cri::CallRewriter::DecideCallback done);
  // StopPodSandbox of an adopted sandbox: unclaimed pre-started containers
  // go, unstarted adopted ones thaw, the late network is released, then the
  // call is forwarded.
  void StopSandbox(const std::string& sandbox_id, cri::CallRewriter::DecideCallback done);
  void ContainerRemoved(const std::string& container_id);
  // `steps` gets a lap per step (the hit's log line).
  absl::Status AdoptContainer(const v1::CreateContainerRequest& req, const AdoptedView& sandbox,
                              const Prestarted& p, StepTimer* steps);
  // Stops and removes the unclaimed pre-started containers of `sandbox_id`
  // (ReapOne: one taken out of unclaimed_ already) and their cgroups, and
  // updates the record.
  void Reap(const std::string& sandbox_id);
  void ReapOne(const std::string& sandbox_id, const std::string& container_id);
  void ReapLoop();
  bool Stats(const AdoptedContainerView& view, v1::ContainerStats* out);
  // Read-modify-write of a record under record_mu_.
  absl::Status UpdateRecord(const std::string& sandbox_id,
                            const std::function<void(AdoptionRecord&)>& change,
                            StateStore::Durability durability);
  std::string CgroupParentOf(const std::string& sandbox_id);
  // Where an adopted sandbox's container is (ContainerCgroups::
  // ContainerCgroup under the sandbox's cgroup parent); "" when the sandbox
  // is not known.
  std::string ContainerCgroupOf(const std::string& sandbox_id, const std::string& container_id);
  // Thaws container `container_id`'s cgroup under `parent` (either driver);
  // errors are ignored (it may be gone).
  void ThawContainer(const std::string& parent, const std::string& container_id);
  class StopRewriter;

  void Decide(const grpc::ByteBuffer& request, cri::CallRewriter::DecideCallback done);
  // The hand-off itself, on a worker: the answer, or an error to roll back.
  absl::StatusOr<std::string> Adopt(const v1::RunPodSandboxRequest& req,
                                    const PoolManager::Claimed& claimed, bool late_network,
                                    StepTimer* steps);
  // Late network: CNI DEL of an adopted sandbox's pod network, recorded as
  // released; OK when there is none or it is already released.
  absl::Status ReleaseNetwork(const std::string& sandbox_id);
  // StopPodSandbox / RemovePodSandbox of an adopted sandbox: its late network
  // is released on a worker, then the call is forwarded (an error answers
  // kubelet instead, which retries).
  void ReleaseThenForward(const std::string& sandbox_id, cri::CallRewriter::DecideCallback done);
  // Where the CRI plugin keeps sandbox files: from the config, else asked
  // of containerd once.
  absl::StatusOr<std::string> CriRoot();
  // kubelet's labels on containerd's own record of `id` (its native API;
  // proto/containerd_containers.proto says why), on a worker, after the
  // answer. A failure is logged only.
  void SetContainerdLabelsLater(const std::string& id,
                                const google::protobuf::Map<std::string, std::string>& labels);
  // The same for a recovered record's sandbox and adopted containers.
  void RelabelRecovered(const AdoptionRecord& r);
  // Removes a claimed entry's cgroups, emptied by the move (after the
  // answer; failures are logged only).
  void RemoveEntryCgroups(const std::string& entry_cgroup);
  void RollBack(const PoolManager::Claimed& claimed, const std::string& cgroup_parent,
                const std::vector<std::string>& moved);
  void Forget(const std::string& sandbox_id);
  void Count(const std::string& reason_code);
  void Post(std::function<void()> work);
  // Post, once daemon.refill_delay has passed: bookkeeping that kubelet does
  // not wait for (containerd's labels, emptied entry cgroups) stays off the
  // CPU while the pod's next calls and its app's first answer run. Run at
  // once when warmpoold stops.
  void PostLater(std::function<void()> work);
  void WorkLoop();

  PoolManager* pools_;
  PoolObjects* objects_;
  StateStore* store_;
  Cgroups* cgroups_;
  RuntimeClient* runtime_;
  const std::string containerd_root_;
  std::unique_ptr<ContainerCgroups> own_placement_;
  ContainerCgroups* placement_;
  LateNetwork* late_ = nullptr;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> work_;  // guarded by mu_
  std::multimap<std::chrono::steady_clock::time_point, std::function<void()>>
      later_;  // PostLater's, by due time; guarded by mu_
  bool stopping_ = false;                   // guarded by mu_
  std::map<std::string, uint64_t> counts_;  // guarded by mu_
  std::string cri_root_;                    // guarded by mu_
  std::map<std::string, Unclaimed> unclaimed_;  // by sandbox id; guarded by mu_
  std::mutex record_mu_;  // serialises read-modify-write of records
  std::condition_variable reaper_cv_;
  std::mutex release_mu_;                   // serialises ReleaseNetwork
  std::vector<std::thread> workers_;
  std::thread reaper_;
  DecisionLog decisions_;  // thread-safe on its own
};

}  // namespace warmpool
