#include "daemon/handoff.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "daemon/failpoint.h"
#include "daemon/log_format.h"
#include "daemon/matcher.h"
#include "daemon/nsops.h"

namespace warmpool {
namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kRunPodSandbox = "/runtime.v1.RuntimeService/RunPodSandbox";
constexpr const char* kRemovePodSandbox = "/runtime.v1.RuntimeService/RemovePodSandbox";
constexpr const char* kStopPodSandbox = "/runtime.v1.RuntimeService/StopPodSandbox";
constexpr const char* kCreateContainer = "/runtime.v1.RuntimeService/CreateContainer";
constexpr const char* kStartContainer = "/runtime.v1.RuntimeService/StartContainer";
constexpr const char* kStopContainer = "/runtime.v1.RuntimeService/StopContainer";
constexpr const char* kRemoveContainer = "/runtime.v1.RuntimeService/RemoveContainer";
constexpr const char* kUpdateContainerResources =
    "/runtime.v1.RuntimeService/UpdateContainerResources";
constexpr const char* kContainerStats = "/runtime.v1.RuntimeService/ContainerStats";
constexpr int kWorkers = 4;

// Replaces a file's content in place (same inode: bind mounts of it see the
// new content). A missing file is NotFound. Not fsync'd: these are a running
// sandbox's files (hostname, resolv.conf), and a power failure that could
// lose them also ends the sandbox, which kubelet then makes anew; a
// warmpoold crash loses nothing written. (Two fsyncs were 16-30 ms of every
// hand-off on these VMs.)
absl::Status RewriteInPlace(const std::string& path, const std::string& content) {
  int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    std::string msg = "open " + path + ": " + std::strerror(err);
    return err == ENOENT ? absl::NotFoundError(msg) : absl::InternalError(msg);
  }
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::string msg = "write " + path + ": " + std::strerror(errno);
      ::close(fd);
      return absl::InternalError(msg);
    }
    done += n;
  }
  ::close(fd);
  return absl::OkStatus();
}

std::string HostResolvConf() {
  std::ifstream in("/etc/resolv.conf");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

AdoptedContainerView ContainerViewOf(const AdoptionRecord& r, const AdoptionRecord::Container& c) {
  AdoptedContainerView view;
  view.container_id = c.container_id;
  view.sandbox_id = r.sandbox_id;
  v1::CreateContainerRequest req;
  req.ParseFromString(c.create_request);
  view.config = req.config();
  v1::RunPodSandboxRequest run;
  run.ParseFromString(r.run_request);
  const std::string& dir = run.config().log_directory();
  view.log_path = dir.empty() ? view.config.log_path() : dir + "/" + view.config.log_path();
  view.created_at_ns = c.created_at_ns;
  view.started_at_ns = c.started_at_ns;
  return view;
}

namespace {

AdoptedView ViewOf(const AdoptionRecord& r) {
  AdoptedView view;
  view.sandbox_id = r.sandbox_id;
  view.pool = r.pool;
  v1::RunPodSandboxRequest req;
  req.ParseFromString(r.run_request);
  view.config = req.config();
  view.runtime_handler = req.runtime_handler();
  view.created_at_ns = r.adopted_at_ns;
  view.late_network = r.late_network.state != AdoptionRecord::LateNetwork::State::kNone;
  view.pod_ips = LateNetwork::PodIps(r.late_network);
  return view;
}

}  // namespace

// RunPodSandbox: the matcher decides on the calling thread; a hit continues
// on a worker.
class Handoff::RunRewriter final : public cri::CallRewriter {
 public:
  explicit RunRewriter(Handoff* handoff) : handoff_(handoff) {}
  void Decide(const grpc::ByteBuffer& request, DecideCallback done) override {
    handoff_->Decide(request, std::move(done));
  }

 private:
  Handoff* handoff_;
};

// StopPodSandbox of an adopted sandbox: its unclaimed pre-started containers
// go and its late network is released (CNI DEL) before containerd stops it.
// (A pool entry's id never reaches the hand-off: PoolReadFilter, which
// chains this rewriter, answers it as an unknown id first.)
class Handoff::StopRewriter final : public cri::CallRewriter {
 public:
  explicit StopRewriter(Handoff* handoff) : handoff_(handoff) {}
  void Decide(const grpc::ByteBuffer& request, DecideCallback done) override {
    v1::StopPodSandboxRequest req;
    if (grpc::Status s = cri::ParseMessage(request, &req); !s.ok()) {
      return done(LocalAnswer{s, {}});
    }
    handoff_->StopSandbox(req.pod_sandbox_id(), std::move(done));
  }

 private:
  Handoff* handoff_;
};

// RemovePodSandbox: an adopted sandbox's late network is released first;
// its record and moved cgroups go once containerd removed it. (Pool entries'
// ids are answered by PoolReadFilter before this runs.)
class Handoff::RemoveRewriter final : public cri::CallRewriter {
 public:
  explicit RemoveRewriter(Handoff* handoff) : handoff_(handoff) {}
  void Decide(const grpc::ByteBuffer& request, DecideCallback done) override {
    v1::RemovePodSandboxRequest req;
    if (grpc::Status s = cri::ParseMessage(request, &req); !s.ok()) {
      return done(LocalAnswer{s, {}});
    }
    id_ = req.pod_sandbox_id();
    handoff_->ReleaseThenForward(id_, std::move(done));
  }
  grpc::Status OnResponse(grpc::ByteBuffer*, bool*) override {
    if (handoff_->objects_->Adopted(id_) != nullptr) handoff_->Forget(id_);
    return grpc::Status::OK;
  }

 private:
  Handoff* handoff_;
  std::string id_;
};

// The container calls of adopted pods: each decides through one member.
class Handoff::ContainerCallRewriter final : public cri::CallRewriter {
 public:
  using DecideFn = void (Handoff::*)(const grpc::ByteBuffer&, DecideCallback);
  ContainerCallRewriter(Handoff* handoff, DecideFn decide, bool removal)
      : handoff_(handoff), decide_(decide), removal_(removal) {}
  void Decide(const grpc::ByteBuffer& request, DecideCallback done) override {
    if (removal_) {
      v1::RemoveContainerRequest req;
      if (cri::ParseMessage(request, &req).ok()) id_ = req.container_id();
      return done(std::nullopt);
    }
    (handoff_->*decide_)(request, std::move(done));
  }
  grpc::Status OnResponse(grpc::ByteBuffer*, bool*) override {
    if (removal_ && !id_.empty()) handoff_->ContainerRemoved(id_);
    return grpc::Status::OK;
  }

 private:
  Handoff* handoff_;
  DecideFn decide_;
  bool removal_;
  std::string id_;
};

Handoff::Handoff(PoolManager* pools, PoolObjects* objects, StateStore* store, Cgroups* cgroups,
                 RuntimeClient* runtime, std::string containerd_root)
    : pools_(pools),
      objects_(objects),
      store_(store),
      cgroups_(cgroups),
      runtime_(runtime),
      containerd_root_(std::move(containerd_root)),
      own_placement_(std::make_unique<ContainerCgroups>(cgroups, nullptr)),
      placement_(own_placement_.get()),
      decisions_(store) {
  objects_->SetStatsSource(
      [this](const AdoptedContainerView& view, v1::ContainerStats* out) { return Stats(view, out); });
  for (int i = 0; i < kWorkers; ++i) workers_.emplace_back([this] { WorkLoop(); });
  reaper_ = std::thread([this] { ReapLoop(); });
}

Handoff::~Handoff() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  reaper_cv_.notify_all();
  for (auto& t : workers_) t.join();
  reaper_.join();
}

std::unique_ptr<cri::CallRewriter> Handoff::ForMethod(const std::string& method) {
  using R = ContainerCallRewriter;
  if (method == kRunPodSandbox) return std::make_unique<RunRewriter>(this);
  if (method == kRemovePodSandbox) return std::make_unique<RemoveRewriter>(this);
  if (method == kStopPodSandbox) return std::make_unique<StopRewriter>(this);
  if (method == kCreateContainer) return std::make_unique<R>(this, &Handoff::DecideCreate, false);
  if (method == kStartContainer) return std::make_unique<R>(this, &Handoff::DecideStart, false);
  if (method == kStopContainer) {
    return std::make_unique<R>(this, &Handoff::DecideStopContainer, false);
  }
  if (method == kRemoveContainer) return std::make_unique<R>(this, nullptr, true);
  if (method == kUpdateContainerResources) {
    return std::make_unique<R>(this, &Handoff::DecideUpdateResources, false);
  }
  if (method == kContainerStats) {
    return std::make_unique<R>(this, &Handoff::DecideContainerStats, false);
  }
  return nullptr;
}

std::map<std::string, uint64_t> Handoff::Counts() {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_;
}

void Handoff::Count(const std::string& reason_code) {
  std::lock_guard<std::mutex> lock(mu_);
  counts_[reason_code]++;
}

void Handoff::Post(std::function<void()> work) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    work_.push_back(std::move(work));
  }
  cv_.notify_one();
}

void Handoff::PostLater(std::function<void()> work) {
  const auto due = Clock::now() + pools_->refill_delay();
  {
    std::lock_guard<std::mutex> lock(mu_);
    later_.emplace(due, std::move(work));
  }
  cv_.notify_one();
}

void Handoff::WorkLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    const auto now = Clock::now();
    while (!later_.empty() && (stopping_ || later_.begin()->first <= now)) {
      work_.push_back(std::move(later_.begin()->second));
      later_.erase(later_.begin());
    }
    if (!work_.empty()) {
      auto work = std::move(work_.front());
      work_.pop_front();
      lock.unlock();
      work();
      lock.lock();
      continue;
    }
    if (stopping_) return;
    if (later_.empty()) {
      cv_.wait(lock);
    } else {
      cv_.wait_until(lock, later_.begin()->first);
    }
  }
}

void Handoff::ReleaseThenForward(const std::string& sandbox_id,
                                 cri::CallRewriter::DecideCallback done) {
  auto view = objects_->Adopted(sandbox_id);
  if (view == nullptr || !view->late_network) return done(std::nullopt);
  Post([this, sandbox_id, done = std::move(done)] {
    if (absl::Status s = ReleaseNetwork(sandbox_id); !s.ok()) {
      // As containerd answers when its own teardown fails: kubelet retries.
      spdlog::warn("sandbox {}: releasing its pod network failed: {}", sandbox_id.substr(0, 13),
                   s.message());
      return done(cri::CallRewriter::LocalAnswer{
          grpc::Status(grpc::StatusCode::UNKNOWN,
                       "failed to destroy network for sandbox \"" + sandbox_id +
                           "\": " + std::string(s.message())),
          {}});
    }
    done(std::nullopt);
  });
}

absl::Status Handoff::ReleaseNetwork(const std::string& sandbox_id) {
  std::lock_guard<std::mutex> lock(release_mu_);  // one DEL + record update at a time
  auto record = store_->Get(sandbox_id);
  if (!record) return absl::OkStatus();
  using State = AdoptionRecord::LateNetwork::State;
  if (record->late_network.state != State::kAdding && record->late_network.state != State::kAdded) {
    return absl::OkStatus();
  }
  if (late_ == nullptr) return absl::FailedPreconditionError("late network binding is not set up");
  if (absl::Status s = late_->Release(sandbox_id, record->late_network); !s.ok()) return s;
  record->late_network.state = State::kReleased;
  if (absl::Status s = store_->Put(*record); !s.ok()) {
    // The DEL is done; DEL is idempotent, so a second one after a crash is harmless.
    spdlog::warn("sandbox {}: recording its released network: {}", sandbox_id.substr(0, 13),
                 s.message());
  }
  spdlog::info("sandbox {}: pod network released (CNI DEL)", sandbox_id.substr(0, 13));
  return absl::OkStatus();
}

void Handoff::Decide(const grpc::ByteBuffer& request, cri::CallRewriter::DecideCallback done) {
  v1::RunPodSandboxRequest req;
  if (!cri::ParseMessage(request, &req).ok()) return done(std::nullopt);  // containerd decides
  if (pools_->passthrough()) {
    decisions_.Record(req.config(), false, "", "passthrough", "pools are off (daemon.passthrough)");
    return done(std::nullopt);
  }
  const std::vector<PoolConfig> pools = pools_->PoolConfigs();
  MatchResult match = MatchSandbox(req, pools);
  const std::string pod = PodNameOf(req.config());
  if (match.hit && !match.pool->is_sandbox_pool() &&
      IsSystemdSlice(req.config().linux().cgroup_parent()) &&
      cgroups_->freezer_version() == CgroupVersion::kV2) {
    // systemd makes a container's scope cgroup with the processes in it: on
    // cgroup2 (where the freezer is that cgroup's cgroup.freeze) the
    // pre-started containers would run before kubelet starts them.
    match.hit = false;
    match.reason_code = "systemd_driver";
    match.reason = "pool \"" + match.pool->name +
                   "\" has pre-started containers; under the systemd cgroup driver they can "
                   "be handed over only with the cgroup v1 freezer";
  }
  if (!match.hit) {
    Count(match.reason_code);
    decisions_.Record(req.config(), false, match.pool ? match.pool->name : "", match.reason_code,
                      match.reason);
    if (match.reason_code == "no_pool") {
      spdlog::debug("cold: pod {}: {}", pod, match.reason);
    } else {
      spdlog::info("miss: pod {} pool {}: {} [{}]", pod,
                   match.pool ? match.pool->name : std::string("-"), match.reason,
                   match.reason_code);
    }
    return done(std::nullopt);
  }
  const std::string pool = match.pool->name;
  const bool late_network = match.pool->network == NetworkTiming::kLate && late_ != nullptr;
  auto claimed = pools_->Claim(pool);
  if (!claimed) {
    Count("pool_empty");
    decisions_.Record(req.config(), false, pool, "pool_empty", pools_->EmptyReason(pool));
    spdlog::info("miss: pod {} pool {}: no frozen entry left [pool_empty]", pod, pool);
    return done(std::nullopt);
  }
  Post([this, req = std::move(req), claimed = *claimed, done = std::move(done), pod, pool,
        late_network] {
    const auto start = Clock::now();
    StepTimer steps;
    absl::StatusOr<std::string> sandbox_id = Adopt(req, claimed, late_network, &steps);
    if (!sandbox_id.ok()) {
      Count("handoff_failed");
      decisions_.Record(req.config(), false, pool, "handoff_failed",
                        "hand-off of entry " + claimed.info.id +
                            " failed, rolled back: " + std::string(sandbox_id.status().message()));
      spdlog::warn(
          "miss: pod {} pool {}: hand-off of entry {} failed, rolled back: {} "
          "[handoff_failed]",
          pod, pool, claimed.info.id, sandbox_id.status().message());
      return done(std::nullopt);
    }
    Count("hit");
    decisions_.Record(req.config(), true, pool, "hit", "", claimed.info.id, *sandbox_id,
                      Clock::now() - start);
    auto adopted = objects_->Adopted(*sandbox_id);
    spdlog::info(
        "hit: pod {} pool {} entry {} sandbox {} in {}us ({}){}", pod, pool, claimed.info.id,
        sandbox_id->substr(0, 13),
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count(),
        steps.Format(),
        adopted && adopted->late_network
            ? " (network bound: " + (adopted->pod_ips.empty() ? "-" : adopted->pod_ips[0]) + ")"
            : "");
    v1::RunPodSandboxResponse resp;
    resp.set_pod_sandbox_id(*sandbox_id);
    cri::CallRewriter::LocalAnswer answer;
    answer.status = cri::SerializeMessage(resp, &answer.response);
    MaybeFail("handoff.recorded");
    done(std::move(answer));
    // After the answer: containerd's bolt commit (tens of ms under load) is
    // not what kubelet should wait for. Recover redoes it after a crash.
    SetContainerdLabelsLater(*sandbox_id, req.config().labels());
    PostLater([this, entry_cgroup = claimed.cgroup_path] { RemoveEntryCgroups(entry_cgroup); });
  });
}

void Handoff::RemoveEntryCgroups(const std::string& entry_cgroup) {
  // Empty since the move; 5-10 ms of rmdir across the hierarchies (and a
  // slice stop with systemd) that kubelet need not wait for, run once the
  // pod's next calls are through (PostLater). Recover redoes it for adopted
  // pods after a crash.
  (void)cgroups_->Thaw(entry_cgroup);
  if (absl::Status s = placement_->RemoveTree(entry_cgroup); !s.ok()) {
    spdlog::warn("removing the emptied entry cgroup {}: {}", entry_cgroup, s.message());
  }
}

absl::StatusOr<std::string> Handoff::Adopt(const v1::RunPodSandboxRequest& req,
                                           const PoolManager::Claimed& claimed,
                                           bool late_network, StepTimer* steps) {
  const std::string& sandbox_id = claimed.info.sandbox_id;
  const std::string parent = req.config().linux().cgroup_parent();
  std::vector<std::string> moved;
  AdoptionRecord record;
  auto fail = [&](absl::Status s) -> absl::Status {
    // The pod network first: containerd's teardown of the entry only DELs
    // the placeholder.
    if (record.late_network.state == AdoptionRecord::LateNetwork::State::kAdding ||
        record.late_network.state == AdoptionRecord::LateNetwork::State::kAdded) {
      if (absl::Status r = late_->Release(sandbox_id, record.late_network); !r.ok()) {
        spdlog::warn("sandbox {}: releasing the pod network after a failed hand-off: {}",
                     sandbox_id.substr(0, 13), r.message());
      }
    }
    RollBack(claimed, parent, moved);
    return s;
  };
  if (parent.empty() || (parent.front() != '/' && !IsSystemdSlice(parent))) {
    return fail(absl::FailedPreconditionError(
        "cgroup_parent \"" + parent + "\" is neither a cgroupfs path nor a systemd slice"));
  }

  record.sandbox_id = sandbox_id;
  record.entry_id = claimed.info.id;
  record.pool = claimed.info.pool;
  record.run_request = req.SerializeAsString();
  record.adopted_at_ns = UnixNowNs();
  record.cgroup_parent = parent;
  record.pod_ip = claimed.info.pod_ip;
  record.template_hash = claimed.template_hash;
  record.unclaimed_containers = claimed.info.container_ids;
  record.phase = AdoptionRecord::Phase::kClaimed;
  if (late_network) {
    // Everything a DEL needs is durable before any ADD runs.
    auto net = late_->Prepare(req, sandbox_id);
    if (!net.ok()) return fail(net.status());
    record.late_network = *net;
  }
  // Not fsync'd without a late network: after a crash recovery rolls a
  // claimed record back, and a claim lost to a power failure leaves a
  // pool-labelled sandbox that the pool manager's recovery removes. With one,
  // the CNI DEL arguments must survive anything.
  if (absl::Status s = store_->Put(record, late_network ? StateStore::Durability::kPowerLoss
                                                        : StateStore::Durability::kProcessCrash);
      !s.ok()) {
    record.late_network = {};  // nothing ran: nothing to release
    return fail(s);
  }
  steps->Lap("claim");
  MaybeFail("handoff.claimed");

  // Every process into kubelet's pod cgroup, one cgroup per container, as
  // containerd would have placed them with the driver the parent names
  // (daemon/systemd_cgroups.h). Pre-started containers stay frozen until
  // kubelet starts them: they go into a freezer cgroup frozen before they
  // arrive.
  std::vector<std::string> children = KernelEntryCgroups(cgroups_).Children(claimed.cgroup_path);
  const v1::LinuxContainerResources sandbox_resources = SandboxContainerResources();
  for (const std::string& child : children) {
    const std::string id = ContainerIdOfCgroup(child);
    const bool is_sandbox = id == sandbox_id;
    moved.push_back(id);
    if (absl::Status s = placement_->MoveContainer(claimed.cgroup_path + "/" + child, parent, id,
                                                   is_sandbox,
                                                   is_sandbox ? &sandbox_resources : nullptr,
                                                   /*frozen=*/!is_sandbox);
        !s.ok()) {
      return fail(s);
    }
  }
  steps->Lap("move");
  MaybeFail("handoff.moved");
  // (The entry's emptied cgroups go after the answer: RemoveEntryCgroups.
  // No durable "moved" step: each Put costs two fsyncs, ~8 ms here, and the
  // "claimed" record already tells recovery which cgroups to undo.)

  // The pod's own network, under its own identity.
  if (record.late_network.state == AdoptionRecord::LateNetwork::State::kAdding) {
    const auto bind_start = Clock::now();
    if (absl::Status s = late_->Bind(sandbox_id, &record.late_network); !s.ok()) return fail(s);
    record.pod_ip = LateNetwork::PodIps(record.late_network).front();
    spdlog::debug("sandbox {}: pod network bound ({}) in {}us", sandbox_id.substr(0, 13),
                  record.pod_ip,
                  std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - bind_start)
                      .count());
    steps->Lap("network");
  }

  // Identity inside the sandbox.
  auto sandbox_cgroup = placement_->ContainerCgroup(parent, sandbox_id);
  if (!sandbox_cgroup.ok()) return fail(sandbox_cgroup.status());
  auto pids = cgroups_->Pids(*sandbox_cgroup);
  if (!pids.ok() || pids->empty()) {
    return fail(absl::InternalError("no pause process in " + *sandbox_cgroup));
  }
  const std::string& hostname = req.config().hostname();
  if (!hostname.empty()) {
    if (absl::Status s = SetHostname(pids->front(), hostname); !s.ok()) return fail(s);
  }
  steps->Lap("hostname");
  auto cri_root = CriRoot();
  if (!cri_root.ok()) return fail(cri_root.status());
  const std::string sandbox_dir = *cri_root + "/sandboxes/" + sandbox_id;
  if (!hostname.empty()) {
    absl::Status s = RewriteInPlace(sandbox_dir + "/hostname", hostname + "\n");
    if (!s.ok() && !absl::IsNotFound(s)) return fail(s);
  }
  const auto& dns = req.config().dns_config();
  const std::string resolv =
      dns.servers().empty() && dns.searches().empty() && dns.options().empty()
          ? HostResolvConf()
          : FormatResolvConf({dns.servers().begin(), dns.servers().end()},
                             {dns.searches().begin(), dns.searches().end()},
                             {dns.options().begin(), dns.options().end()});
  if (absl::Status s = RewriteInPlace(sandbox_dir + "/resolv.conf", resolv); !s.ok()) {
    return fail(absl::FailedPreconditionError(std::string(s.message()) +
                                              " (is daemon.containerd_root containerd's root?)"));
  }

  steps->Lap("files");

  MaybeFail("handoff.identity");
  record.phase = AdoptionRecord::Phase::kDone;
  if (absl::Status s = store_->Put(record); !s.ok()) return fail(s);
  steps->Lap("record");
  objects_->AddAdopted(ViewOf(record));
  if (!claimed.info.prestarted.empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    unclaimed_[sandbox_id] =
        Unclaimed{sandbox_id, claimed.info.prestarted, Clock::now() + kUnclaimedTimeout};
  }
  return sandbox_id;
}

void Handoff::SetContainerdLabelsLater(
    const std::string& id, const google::protobuf::Map<std::string, std::string>& labels) {
  std::map<std::string, std::string> wanted(labels.begin(), labels.end());
  PostLater([this, id, wanted = std::move(wanted)] {
    // Not a reason to undo the hand-off: CRI reads are rewritten anyway, and
    // only stats collectors that read containerd directly see the pool's
    // names. A container kubelet removed meanwhile is NotFound: nothing to do.
    absl::Status s = runtime_->SetContainerdLabels(id, wanted);
    if (!s.ok() && !absl::IsNotFound(s)) {
      spdlog::warn("{}: setting kubelet's labels on containerd's record: {}", id.substr(0, 13),
                   s.message());
    }
  });
}

void Handoff::RelabelRecovered(const AdoptionRecord& r) {
  v1::RunPodSandboxRequest run;
  if (run.ParseFromString(r.run_request)) SetContainerdLabelsLater(r.sandbox_id, run.config().labels());
  for (const auto& c : r.containers) {
    v1::CreateContainerRequest create;
    if (create.ParseFromString(c.create_request)) {
      SetContainerdLabelsLater(c.container_id, create.config().labels());
    }
  }
}

absl::StatusOr<std::string> Handoff::CriRoot() {
  if (!containerd_root_.empty()) return containerd_root_ + "/io.containerd.grpc.v1.cri";
  std::lock_guard<std::mutex> lock(mu_);
  if (!cri_root_.empty()) return cri_root_;
  v1::StatusResponse status;
  if (absl::Status s = runtime_->Status(/*verbose=*/true, &status); !s.ok()) return s;
  auto config = nlohmann::json::parse(
      status.info().count("config") ? status.info().at("config") : "", nullptr, false);
  if (!config.is_object() || !config.contains("rootDir") || !config["rootDir"].is_string()) {
    return absl::FailedPreconditionError(
        "containerd's status does not name its CRI root dir; set daemon.containerd_root");
  }
  cri_root_ = config["rootDir"].get<std::string>();
  return cri_root_;
}

void Handoff::RollBack(const PoolManager::Claimed& claimed, const std::string& cgroup_parent,
                       const std::vector<std::string>& moved) {
  // Processes already moved die with the sandbox (thawed first: a frozen task
  // cannot die); then their cgroups go.
  for (const std::string& child : moved) ThawContainer(cgroup_parent, child);
  pools_->DestroyClaimed(claimed);
  for (const std::string& id : moved) {
    if (absl::Status s = placement_->RemoveMoved(cgroup_parent, id); !s.ok()) {
      spdlog::warn("roll-back of sandbox {}: removing the cgroup of {}: {}",
                   claimed.info.sandbox_id.substr(0, 13), id.substr(0, 13), s.message());
    }
  }
  (void)store_->Remove(claimed.info.sandbox_id);
}

void Handoff::Forget(const std::string& sandbox_id) {
  auto record = store_->Get(sandbox_id);
  objects_->RemoveAdopted(sandbox_id);
  {
    std::lock_guard<std::mutex> lock(mu_);
    unclaimed_.erase(sandbox_id);
  }
  if (record) {
    // runc removed the cgroups it knew (the entry's); the moved ones are ours.
    std::vector<std::string> ids = {sandbox_id};
    for (const auto& c : record->containers) {
      ids.push_back(c.container_id);
      objects_->RemoveAdoptedContainer(c.container_id);
    }
    for (const auto& id : record->unclaimed_containers) {
      ids.push_back(id);
      objects_->Remove(id);
    }
    for (const std::string& id : ids) {
      ThawContainer(record->cgroup_parent, id);
      if (absl::Status s = placement_->RemoveMoved(record->cgroup_parent, id); !s.ok()) {
        spdlog::warn("sandbox {}: removing the cgroup of {}: {}", sandbox_id.substr(0, 13),
                     id.substr(0, 13), s.message());
      }
    }
    std::error_code ec;
    std::filesystem::remove_all(pools_->EntryLogDir(record->entry_id), ec);
  }
  std::lock_guard<std::mutex> lock(record_mu_);
  if (absl::Status s = store_->Remove(sandbox_id); !s.ok()) {
    spdlog::warn("sandbox {}: removing its hand-off record: {}", sandbox_id.substr(0, 13),
                 s.message());
  }
}

absl::Status Handoff::Recover() {
  for (const AdoptionRecord& r : store_->All()) {
    v1::PodSandboxStatusResponse status;
    absl::Status exists = runtime_->PodSandboxStatus(r.sandbox_id, &status);
    if (r.phase == AdoptionRecord::Phase::kDone) {
      if (absl::IsNotFound(exists)) {
        spdlog::info("hand-off record of sandbox {}: containerd no longer has it; dropped",
                     r.sandbox_id.substr(0, 13));
        if (absl::Status s = ReleaseNetwork(r.sandbox_id); !s.ok()) {
          spdlog::warn("sandbox {}: releasing its pod network: {}", r.sandbox_id.substr(0, 13),
                       s.message());
        }
        (void)placement_->RemoveMoved(r.cgroup_parent, r.sandbox_id);
        (void)store_->Remove(r.sandbox_id);
        continue;
      }
      if (!exists.ok()) return exists;  // upstream trouble: try again at the next start
      objects_->AddAdopted(ViewOf(r));
      for (const auto& c : r.containers) objects_->AddAdoptedContainer(ContainerViewOf(r, c));
      // A crash may have come between an answer and its label update, or
      // the removal of the entry's emptied cgroups.
      RelabelRecovered(r);
      RemoveEntryCgroups(pools_->EntryCgroupPath(r.pool, r.entry_id));  // idempotent
      if (!r.unclaimed_containers.empty()) {
        // Nobody can claim them any more (their names are not kept): remove.
        for (const auto& id : r.unclaimed_containers) objects_->AddContainer(id);
        std::lock_guard<std::mutex> lock(mu_);
        Unclaimed u{r.sandbox_id, {}, Clock::now()};
        for (const auto& id : r.unclaimed_containers) u.containers.push_back({id, "", "", ""});
        unclaimed_[r.sandbox_id] = std::move(u);
        reaper_cv_.notify_all();
      }
      continue;
    }
    // A hand-off cut short: kubelet never got this sandbox. Undo it.
    spdlog::info("hand-off of entry {} (sandbox {}) was cut short in phase {}; rolling back",
                 r.entry_id, r.sandbox_id.substr(0, 13), PhaseName(r.phase));
    // An ADD may have run (in part): DEL with what was recorded before it.
    if (absl::Status s = ReleaseNetwork(r.sandbox_id); !s.ok()) {
      spdlog::warn("sandbox {}: releasing its pod network: {}", r.sandbox_id.substr(0, 13),
                   s.message());
    }
    PoolManager::Claimed claimed;
    claimed.info.id = r.entry_id;
    claimed.info.pool = r.pool;
    claimed.info.sandbox_id = r.sandbox_id;
    claimed.cgroup_path.clear();
    // The entry's own cgroup path is derived the way the pool manager makes it.
    claimed.cgroup_path = pools_->EntryCgroupPath(r.pool, r.entry_id);
    // RemoveMoved is idempotent: whatever of the move happened is undone.
    std::vector<std::string> moved = {r.sandbox_id};
    moved.insert(moved.end(), r.unclaimed_containers.begin(), r.unclaimed_containers.end());
    RollBack(claimed, r.cgroup_parent, moved);
  }
  return absl::OkStatus();
}

}  // namespace warmpool
