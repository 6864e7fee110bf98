// The container half of the hand-off: kubelet's container calls on an
// adopted app-pool sandbox (see "App pools" in daemon/handoff.h).

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "daemon/failpoint.h"
#include "daemon/step_timer.h"
#include "daemon/handoff.h"
#include "daemon/log_format.h"
#include "daemon/matcher.h"
#include "daemon/nsops.h"

namespace warmpool {
namespace {

using Clock = std::chrono::steady_clock;
using LocalAnswer = cri::CallRewriter::LocalAnswer;

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

LocalAnswer Answer(const google::protobuf::Message& m) {
  LocalAnswer a;
  a.status = cri::SerializeMessage(m, &a.response);
  return a;
}

std::string Errno(int err) { return std::strerror(err); }

// Makes the log a pre-started container writes (`pool_path`, held open by
// containerd's shim) appear at kubelet's `kubelet_path`: a hard link, so the
// shim's writes land in kubelet's file; then `pool_path` becomes a symlink to
// kubelet's path, so when kubelet rotates (renames its file, then
// ReopenContainerLog) containerd reopens -- and creates -- kubelet's path.
// Idempotent: a retry after a crash finds the link and the symlink in place.
absl::Status LinkLog(const std::string& pool_path, const std::string& kubelet_path) {
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::path(kubelet_path).parent_path();
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError("cannot create " + dir.string() + ": " + ec.message());
  if (::link(pool_path.c_str(), kubelet_path.c_str()) != 0) {
    const int err = errno;
    struct stat a {};
    struct stat b {};
    const bool same = err == EEXIST && ::stat(pool_path.c_str(), &a) == 0 &&
                      ::stat(kubelet_path.c_str(), &b) == 0 && a.st_dev == b.st_dev &&
                      a.st_ino == b.st_ino;
    if (!same) {
      return absl::FailedPreconditionError(
          "cannot link the container's log " + pool_path + " to " + kubelet_path + ": " +
          Errno(err) +
          (err == EXDEV ? " (daemon.state_dir must be on the filesystem of kubelet's pod logs)"
                        : ""));
    }
  }
  const std::string tmp = pool_path + ".wp-link";
  ::unlink(tmp.c_str());
  if (::symlink(kubelet_path.c_str(), tmp.c_str()) != 0 ||
      ::rename(tmp.c_str(), pool_path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return absl::InternalError("cannot point " + pool_path + " at " + kubelet_path + ": " +
                               Errno(err));
  }
  return absl::OkStatus();
}

// kubelet's oom_score_adj for the container's processes. This machine (and
// containerd's restrict_oom_score_adj) refuses to lower it below the
// runtime's own; as on the cold path, such a value stays clamped.
void SetOomScoreAdj(const std::vector<pid_t>& pids, int64_t value) {
  for (pid_t pid : pids) {
    std::ofstream f("/proc/" + std::to_string(pid) + "/oom_score_adj");
    f << value;
    f.flush();
    if (!f) spdlog::debug("oom_score_adj {} of pid {} refused; left as it is", value, pid);
  }
}

}  // namespace

std::string Handoff::CgroupParentOf(const std::string& sandbox_id) {
  if (auto view = objects_->Adopted(sandbox_id)) return view->config.linux().cgroup_parent();
  if (auto record = store_->Get(sandbox_id)) return record->cgroup_parent;
  return "";
}

std::string Handoff::ContainerCgroupOf(const std::string& sandbox_id,
                                       const std::string& container_id) {
  const std::string parent = CgroupParentOf(sandbox_id);
  if (parent.empty()) return "";
  auto path = placement_->ContainerCgroup(parent, container_id);
  return path.ok() ? *path : "";
}

void Handoff::ThawContainer(const std::string& parent, const std::string& container_id) {
  auto path = placement_->ContainerCgroup(parent, container_id);
  if (path.ok()) (void)cgroups_->Thaw(*path);
}

absl::Status Handoff::UpdateRecord(const std::string& sandbox_id,
                                   const std::function<void(AdoptionRecord&)>& change,
                                   StateStore::Durability durability) {
  std::lock_guard<std::mutex> lock(record_mu_);
  std::optional<AdoptionRecord> record = store_->Get(sandbox_id);
  if (!record) return absl::NotFoundError("no hand-off record for sandbox " + sandbox_id);
  change(*record);
  return store_->Put(*record, durability);
}

void Handoff::DecideCreate(const grpc::ByteBuffer& request,
                           cri::CallRewriter::DecideCallback done) {
  v1::CreateContainerRequest req;
  if (!cri::ParseMessage(request, &req).ok()) return done(std::nullopt);
  std::shared_ptr<const AdoptedView> sandbox = objects_->Adopted(req.pod_sandbox_id());
  if (!sandbox) return done(std::nullopt);
  // Take the pre-started container of that name out of the unclaimed set
  // now, so a second CreateContainer (a retry) can never get it too.
  std::optional<Prestarted> candidate;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = unclaimed_.find(sandbox->sandbox_id);
    if (it != unclaimed_.end()) {
      auto& list = it->second.containers;
      auto p = std::find_if(list.begin(), list.end(), [&](const Prestarted& p) {
        return p.template_name == req.config().metadata().name();
      });
      if (p != list.end()) {
        candidate = *p;
        list.erase(p);
      }
    }
  }
  if (!candidate) return done(std::nullopt);  // nothing pre-started of that name: cold
  Post([this, req = std::move(req), sandbox, p = *candidate, done = std::move(done)] {
    const std::string pod = PodNameOf(sandbox->config);
    const std::string& name = req.config().metadata().name();
    auto miss = [&](const std::string& reason, const std::string& code) {
      Count("container_" + code);
      spdlog::info("miss: pod {} container {} pool {}: {} [{}]; the pre-started one is removed",
                   pod, name, sandbox->pool, reason, code);
      ReapOne(sandbox->sandbox_id, p.container_id);
      done(std::nullopt);
    };
    const std::vector<PoolConfig> pools = pools_->PoolConfigs();
    auto pool = std::find_if(pools.begin(), pools.end(),
                             [&](const PoolConfig& c) { return c.name == sandbox->pool; });
    std::optional<AdoptionRecord> record = store_->Get(sandbox->sandbox_id);
    if (pool == pools.end() || !record || TemplateHash(*pool) != record->template_hash) {
      return miss("pool \"" + sandbox->pool +
                      "\" is no longer configured as it was when this entry was made",
                  "template_changed");
    }
    auto t = std::find_if(pool->containers.begin(), pool->containers.end(),
                          [&](const ContainerTemplate& t) { return t.name == p.template_name; });
    if (t == pool->containers.end()) {
      return miss("the pool has no container " + p.template_name, "template_changed");
    }
    MatchResult match = MatchContainer(req.config(), *pool, *t, p.image_ref, IsServiceLinkEnv);
    if (!match.hit) return miss(match.reason, match.reason_code);
    for (const v1::Mount& m : req.config().mounts()) {
      if (m.propagation() != v1::PROPAGATION_PRIVATE || m.selinux_relabel()) {
        return miss("config.mounts: " + m.container_path() +
                        " asks for mount propagation or an SELinux relabel, which warmpool "
                        "cannot add to a running container",
                    "mounts");
      }
    }
    const auto start = Clock::now();
    StepTimer steps;
    if (absl::Status s = AdoptContainer(req, *sandbox, p, &steps); !s.ok()) {
      Count("container_handoff_failed");
      spdlog::warn("miss: pod {} container {} pool {}: adopting pre-started container {} failed: "
                   "{} [handoff_failed]; the pre-started one is removed",
                   pod, name, sandbox->pool, p.container_id.substr(0, 13), s.message());
      ReapOne(sandbox->sandbox_id, p.container_id);
      return done(std::nullopt);
    }
    Count("container_hit");
    spdlog::info(
        "hit: pod {} container {} pool {} pre-started {} in {}us ({})", pod, name,
        sandbox->pool, p.container_id.substr(0, 13),
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count(),
        steps.Format());
    v1::CreateContainerResponse resp;
    resp.set_container_id(p.container_id);
    done(Answer(resp));
    // containerd's own record of the container gets kubelet's labels
    // (cAdvisor names the container's cgroup stats by them), after the
    // answer: it is a bolt commit in containerd.
    SetContainerdLabelsLater(p.container_id, req.config().labels());
  });
}

absl::Status Handoff::AdoptContainer(const v1::CreateContainerRequest& req,
                                     const AdoptedView& sandbox, const Prestarted& p,
                                     StepTimer* steps) {
  const v1::ContainerConfig& config = req.config();
  const std::string& parent = sandbox.config.linux().cgroup_parent();
  auto where = placement_->ContainerCgroup(parent, p.container_id);
  if (!where.ok()) return where.status();
  const std::string& cgroup = *where;

  // 1. The log, at kubelet's path.
  // (containerd's log path was taken when the entry was made.)
  if (!config.log_path().empty() && !sandbox.config.log_directory().empty()) {
    const std::string kubelet_log = sandbox.config.log_directory() + "/" + config.log_path();
    if (absl::Status s = LinkLog(p.log_path, kubelet_log); !s.ok()) return s;
  }
  steps->Lap("log");
  MaybeFail("container.linked");

  // 2. kubelet's mounts (etc-hosts, termination-log, volumes, tokens).
  auto pids = cgroups_->Pids(cgroup);
  if (!pids.ok()) return pids.status();
  if (pids->empty()) return absl::FailedPreconditionError("no process left in " + cgroup);
  std::vector<BindMount> mounts;
  for (const v1::Mount& m : config.mounts()) {
    mounts.push_back({m.host_path(), m.container_path(), m.readonly()});
  }
  if (absl::Status s = InjectBindMounts(pids->front(), mounts); !s.ok()) return s;
  steps->Lap("mounts");
  MaybeFail("container.mounted");

  // 3. Resources, where the processes are.
  const v1::LinuxContainerResources& r = config.linux().resources();
  if (absl::Status s = placement_->ApplyResources(parent, p.container_id, r); !s.ok()) return s;
  if (r.oom_score_adj() != 0) SetOomScoreAdj(*pids, r.oom_score_adj());
  steps->Lap("limits");

  // 4. The record, then kubelet's view.
  AdoptionRecord::Container c;
  c.container_id = p.container_id;
  c.template_name = p.template_name;
  c.create_request = req.SerializeAsString();
  c.created_at_ns = UnixNowNs();
  AdoptionRecord updated;
  absl::Status s = UpdateRecord(
      sandbox.sandbox_id,
      [&](AdoptionRecord& rec) {
        rec.containers.push_back(c);
        auto& u = rec.unclaimed_containers;
        u.erase(std::remove(u.begin(), u.end(), p.container_id), u.end());
        updated = rec;
      },
      StateStore::Durability::kPowerLoss);
  if (!s.ok()) return s;
  steps->Lap("record");
  MaybeFail("container.recorded");
  objects_->AddAdoptedContainer(ContainerViewOf(updated, c));
  return absl::OkStatus();
}

void Handoff::DecideStart(const grpc::ByteBuffer& request, cri::CallRewriter::DecideCallback done) {
  v1::StartContainerRequest req;
  if (!cri::ParseMessage(request, &req).ok()) return done(std::nullopt);
  std::shared_ptr<const AdoptedContainerView> view = objects_->AdoptedContainer(req.container_id());
  if (!view) return done(std::nullopt);
  if (view->started_at_ns != 0) {
    // containerd's answer for starting a running container.
    return done(LocalAnswer{grpc::Status(grpc::StatusCode::UNKNOWN,
                                         "failed to set starting state for container \"" +
                                             view->container_id +
                                             "\": container is in RUNNING state"),
                            {}});
  }
  Post([this, view, done = std::move(done)] {
    const std::string cgroup = ContainerCgroupOf(view->sandbox_id, view->container_id);
    if (absl::Status s = cgroups_->Thaw(cgroup); !s.ok()) return done(LocalAnswer{ToGrpc(s), {}});
    const int64_t now = UnixNowNs();
    absl::Status s = UpdateRecord(
        view->sandbox_id,
        [&](AdoptionRecord& rec) {
          for (auto& c : rec.containers) {
            if (c.container_id == view->container_id) c.started_at_ns = now;
          }
        },
        // A start time lost to a power failure only shows as "created".
        StateStore::Durability::kProcessCrash);
    if (!s.ok()) spdlog::warn("container {}: recording its start: {}", view->container_id, s.message());
    AdoptedContainerView started = *view;
    started.started_at_ns = now;
    objects_->AddAdoptedContainer(std::move(started));
    done(Answer(v1::StartContainerResponse()));
  });
}

void Handoff::DecideStopContainer(const grpc::ByteBuffer& request,
                                  cri::CallRewriter::DecideCallback done) {
  v1::StopContainerRequest req;
  if (!cri::ParseMessage(request, &req).ok()) return done(std::nullopt);
  std::shared_ptr<const AdoptedContainerView> view = objects_->AdoptedContainer(req.container_id());
  if (!view || view->started_at_ns != 0) return done(std::nullopt);
  // Never started by kubelet: still frozen, and a frozen task cannot die.
  Post([this, view, done = std::move(done)] {
    ThawContainer(CgroupParentOf(view->sandbox_id), view->container_id);
    done(std::nullopt);
  });
}

void Handoff::DecideUpdateResources(const grpc::ByteBuffer& request,
                                    cri::CallRewriter::DecideCallback done) {
  auto req = std::make_shared<v1::UpdateContainerResourcesRequest>();
  if (!cri::ParseMessage(request, req.get()).ok()) return done(std::nullopt);
  std::shared_ptr<const AdoptedContainerView> view = objects_->AdoptedContainer(req->container_id());
  if (!view) return done(std::nullopt);
  // containerd would update the pool's old cgroup: apply where the processes are.
  Post([this, view, req, done = std::move(done)] {
    const std::string parent = CgroupParentOf(view->sandbox_id);
    if (absl::Status s = placement_->ApplyResources(parent, view->container_id, req->linux());
        !s.ok()) {
      return done(LocalAnswer{ToGrpc(s), {}});
    }
    auto cgroup = placement_->ContainerCgroup(parent, view->container_id);
    if (req->linux().oom_score_adj() != 0 && cgroup.ok()) {
      if (auto pids = cgroups_->Pids(*cgroup); pids.ok()) {
        SetOomScoreAdj(*pids, req->linux().oom_score_adj());
      }
    }
    // Reads report the resources in force, as containerd does after an update.
    AdoptedContainerView updated = *view;
    *updated.config.mutable_linux()->mutable_resources() = req->linux();
    (void)UpdateRecord(
        view->sandbox_id,
        [&](AdoptionRecord& rec) {
          for (auto& c : rec.containers) {
            if (c.container_id != view->container_id) continue;
            v1::CreateContainerRequest create;
            create.ParseFromString(c.create_request);
            *create.mutable_config()->mutable_linux()->mutable_resources() = req->linux();
            c.create_request = create.SerializeAsString();
          }
        },
        StateStore::Durability::kPowerLoss);
    objects_->AddAdoptedContainer(std::move(updated));
    done(Answer(v1::UpdateContainerResourcesResponse()));
  });
}

bool Handoff::Stats(const AdoptedContainerView& view, v1::ContainerStats* out) {
  const std::string cgroup = ContainerCgroupOf(view.sandbox_id, view.container_id);
  if (cgroup.empty()) return false;
  v1::ContainerAttributes* a = out->mutable_attributes();
  a->set_id(view.container_id);
  *a->mutable_metadata() = view.config.metadata();
  *a->mutable_labels() = view.config.labels();
  *a->mutable_annotations() = view.config.annotations();
  const int64_t now = UnixNowNs();
  out->clear_cpu();
  out->clear_memory();
  if (auto cpu = cgroups_->CpuUsageNanos(cgroup); cpu.ok()) {
    out->mutable_cpu()->set_timestamp(now);
    out->mutable_cpu()->mutable_usage_core_nano_seconds()->set_value(*cpu);
  }
  auto usage = cgroups_->MemoryUsage(cgroup);
  auto working_set = cgroups_->MemoryWorkingSet(cgroup);
  if (usage.ok() && working_set.ok()) {
    out->mutable_memory()->set_timestamp(now);
    out->mutable_memory()->mutable_working_set_bytes()->set_value(*working_set);
    out->mutable_memory()->mutable_usage_bytes()->set_value(*usage);
  }
  return true;
}

void Handoff::DecideContainerStats(const grpc::ByteBuffer& request,
                                   cri::CallRewriter::DecideCallback done) {
  v1::ContainerStatsRequest req;
  if (!cri::ParseMessage(request, &req).ok()) return done(std::nullopt);
  std::shared_ptr<const AdoptedContainerView> view = objects_->AdoptedContainer(req.container_id());
  if (!view) return done(std::nullopt);
  Post([this, view, done = std::move(done)] {
    v1::ContainerStatsResponse resp;
    if (!Stats(*view, resp.mutable_stats())) {
      return done(LocalAnswer{grpc::Status(grpc::StatusCode::NOT_FOUND,
                                           "failed to find container: not found"),
                              {}});
    }
    done(Answer(resp));
  });
}

void Handoff::StopSandbox(const std::string& sandbox_id,
                          cri::CallRewriter::DecideCallback done) {
  std::shared_ptr<const AdoptedView> sandbox = objects_->Adopted(sandbox_id);
  if (!sandbox) return ReleaseThenForward(sandbox_id, std::move(done));
  Post([this, sandbox, done = std::move(done)]() mutable {
    Reap(sandbox->sandbox_id);
    // Adopted containers kubelet never started are still frozen.
    if (auto record = store_->Get(sandbox->sandbox_id)) {
      for (const auto& c : record->containers) {
        if (c.started_at_ns == 0) {
          ThawContainer(record->cgroup_parent, c.container_id);
        }
      }
    }
    ReleaseThenForward(sandbox->sandbox_id, std::move(done));
  });
}

void Handoff::ContainerRemoved(const std::string& container_id) {
  std::shared_ptr<const AdoptedContainerView> view = objects_->AdoptedContainer(container_id);
  if (!view) return;
  Post([this, view] {
    if (absl::Status s = placement_->RemoveMoved(CgroupParentOf(view->sandbox_id),
                                                 view->container_id);
        !s.ok()) {
      spdlog::warn("container {}: removing its cgroup: {}", view->container_id.substr(0, 13),
                   s.message());
    }
    (void)UpdateRecord(
        view->sandbox_id,
        [&](AdoptionRecord& rec) {
          auto& cs = rec.containers;
          cs.erase(std::remove_if(cs.begin(), cs.end(),
                                  [&](const auto& c) { return c.container_id == view->container_id; }),
                   cs.end());
        },
        StateStore::Durability::kPowerLoss);
    objects_->RemoveAdoptedContainer(view->container_id);
  });
}

void Handoff::Reap(const std::string& sandbox_id) {
  std::vector<Prestarted> containers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = unclaimed_.find(sandbox_id);
    if (it == unclaimed_.end()) return;
    containers = std::move(it->second.containers);
    unclaimed_.erase(it);
  }
  for (const Prestarted& p : containers) ReapOne(sandbox_id, p.container_id);
}

void Handoff::ReapOne(const std::string& sandbox_id, const std::string& container_id) {
  const std::string parent = CgroupParentOf(sandbox_id);
  if (!parent.empty()) ThawContainer(parent, container_id);
  absl::Status s = runtime_->StopContainer(container_id, 0);
  if (s.ok() || absl::IsNotFound(s)) s = runtime_->RemoveContainer(container_id);
  if (!s.ok() && !absl::IsNotFound(s)) {
    spdlog::warn("sandbox {}: removing unclaimed pre-started container {}: {}",
                 sandbox_id.substr(0, 13), container_id.substr(0, 13), s.message());
  }
  if (!parent.empty()) {
    if (absl::Status r = placement_->RemoveMoved(parent, container_id); !r.ok()) {
      spdlog::warn("sandbox {}: removing the cgroup of unclaimed container {}: {}",
                   sandbox_id.substr(0, 13), container_id.substr(0, 13), r.message());
    }
  }
  objects_->Remove(container_id);
  (void)UpdateRecord(
      sandbox_id,
      [&](AdoptionRecord& rec) {
        auto& u = rec.unclaimed_containers;
        u.erase(std::remove(u.begin(), u.end(), container_id), u.end());
      },
      StateStore::Durability::kProcessCrash);
  spdlog::info("sandbox {}: removed pre-started container {} that no container of the pod claimed",
               sandbox_id.substr(0, 13), container_id.substr(0, 13));
}

void Handoff::ReapLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    const auto now = Clock::now();
    auto next = now + std::chrono::seconds(1);
    std::vector<std::string> due;
    for (const auto& [id, u] : unclaimed_) {
      if (u.reap_at <= now) {
        due.push_back(id);
      } else {
        next = std::min(next, u.reap_at);
      }
    }
    if (due.empty()) {
      reaper_cv_.wait_until(lock, next);
      continue;
    }
    lock.unlock();
    for (const std::string& id : due) Reap(id);
    lock.lock();
  }
}

}  // namespace warmpool
