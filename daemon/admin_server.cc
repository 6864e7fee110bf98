#include "daemon/admin_server.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <tuple>
#include <utility>

#include "cri/server.h"
#include "warmpool_admin.grpc.pb.h"

namespace warmpool {
namespace {

int64_t UnixNanos(std::chrono::system_clock::time_point t) {
  if (t == std::chrono::system_clock::time_point{}) return 0;
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

}  // namespace

admin::v1::EntryState ToProto(EntryState state) {
  switch (state) {
    case EntryState::kCreating:
      return admin::v1::ENTRY_STATE_CREATING;
    case EntryState::kWarming:
      return admin::v1::ENTRY_STATE_WARMING;
    case EntryState::kFrozen:
      return admin::v1::ENTRY_STATE_FROZEN;
    case EntryState::kAdopted:
      return admin::v1::ENTRY_STATE_ADOPTED;
    case EntryState::kDestroying:
      return admin::v1::ENTRY_STATE_DESTROYING;
  }
  return admin::v1::ENTRY_STATE_UNSPECIFIED;
}

admin::v1::PoolStatus ToProto(const PoolStatus& pool) {
  admin::v1::PoolStatus out;
  out.set_name(pool.name);
  out.set_target(pool.target);
  out.set_creating(pool.creating);
  out.set_warming(pool.warming);
  out.set_frozen(pool.frozen);
  out.set_adopted(pool.adopted);
  out.set_failures(pool.failures);
  out.set_hits(pool.hits);
  out.set_memory_bytes(pool.memory_bytes);
  out.set_last_error(pool.last_error);
  out.set_backoff_ms(pool.backoff.count());
  out.set_draining(pool.draining);
  out.set_drained(pool.drained);
  return out;
}

admin::v1::Entry ToProto(const EntryInfo& entry) {
  admin::v1::Entry out;
  out.set_id(entry.id);
  out.set_pool(entry.pool);
  out.set_state(ToProto(entry.state));
  out.set_sandbox_id(entry.sandbox_id);
  for (const std::string& id : entry.container_ids) out.add_container_ids(id);
  out.set_pod_ip(entry.pod_ip);
  out.set_created_at_unix_nanos(UnixNanos(entry.created_at));
  out.set_state_since_unix_nanos(UnixNanos(entry.state_since));
  out.set_memory_bytes(entry.memory_bytes);
  out.set_last_error(entry.last_error);
  return out;
}

admin::v1::Decision ToProto(const Decision& d) {
  admin::v1::Decision out;
  out.set_namespace_(d.pod_namespace);
  out.set_name(d.pod_name);
  out.set_uid(d.pod_uid);
  out.set_attempt(d.attempt);
  out.set_hit(d.hit);
  out.set_pool(d.pool);
  out.set_reason_code(d.reason_code);
  out.set_reason(d.reason);
  out.set_decided_at_unix_nanos(UnixNanos(d.at));
  out.set_entry_id(d.entry_id);
  out.set_sandbox_id(d.sandbox_id);
  out.set_handoff_micros(d.handoff.count());
  out.set_source(d.source);
  return out;
}

absl::StatusOr<PoolStatus> AdminBackend::Drain(const std::string&) {
  return absl::UnimplementedError("drain is not supported by this backend");
}

absl::StatusOr<PoolStatus> AdminBackend::Fill(const std::string&) {
  return absl::UnimplementedError("fill is not supported by this backend");
}

// The handlers copy a snapshot from the backend and answer inline, on the
// gRPC thread that delivered the call: nothing here waits.
class AdminServer::Service final : public admin::v1::Admin::CallbackService {
 public:
  Service(AdminBackend* backend, const DecisionLog* decisions)
      : backend_(backend), decisions_(decisions) {}

  grpc::ServerUnaryReactor* ListPools(grpc::CallbackServerContext* context,
                                      const admin::v1::ListPoolsRequest* request,
                                      admin::v1::ListPoolsResponse* response) override {
    for (const PoolStatus& pool : backend_->Pools()) *response->add_pools() = ToProto(pool);
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* ListEntries(grpc::CallbackServerContext* context,
                                        const admin::v1::ListEntriesRequest* request,
                                        admin::v1::ListEntriesResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    const std::string& pool = request->pool();
    std::vector<EntryInfo> entries = backend_->Entries();
    if (!pool.empty()) {
      std::erase_if(entries, [&](const EntryInfo& e) { return e.pool != pool; });
      if (entries.empty() && !HasPool(pool)) {
        reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "no pool named '" + pool + "'"));
        return reactor;
      }
    }
    std::sort(entries.begin(), entries.end(), [](const EntryInfo& a, const EntryInfo& b) {
      return std::tie(a.pool, a.created_at, a.id) < std::tie(b.pool, b.created_at, b.id);
    });
    for (const EntryInfo& entry : entries) *response->add_entries() = ToProto(entry);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Explain(grpc::CallbackServerContext* context,
                                    const admin::v1::ExplainRequest* request,
                                    admin::v1::ExplainResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (decisions_ == nullptr) {
      reactor->Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "explain is not available"));
      return reactor;
    }
    if (request->pod().empty()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   "name a pod: namespace/name, its uid, or a name in default"));
      return reactor;
    }
    for (const Decision& d : decisions_->Find(request->pod())) {
      *response->add_decisions() = ToProto(d);
    }
    response->set_log_since_unix_nanos(UnixNanos(decisions_->since()));
    response->set_log_capacity(static_cast<uint32_t>(decisions_->capacity()));
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* context,
                                  const admin::v1::DrainRequest* request,
                                  admin::v1::DrainResponse* response) override {
    return Answer(context, backend_->Drain(request->pool()), response->mutable_pool());
  }

  grpc::ServerUnaryReactor* Fill(grpc::CallbackServerContext* context,
                                 const admin::v1::FillRequest* request,
                                 admin::v1::FillResponse* response) override {
    return Answer(context, backend_->Fill(request->pool()), response->mutable_pool());
  }

 private:
  static grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context,
                                          const absl::StatusOr<PoolStatus>& result,
                                          admin::v1::PoolStatus* out) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (!result.ok()) {
      reactor->Finish(grpc::Status(static_cast<grpc::StatusCode>(result.status().code()),
                                   std::string(result.status().message())));
      return reactor;
    }
    *out = ToProto(*result);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  bool HasPool(const std::string& name) {
    std::vector<PoolStatus> pools = backend_->Pools();
    return std::any_of(pools.begin(), pools.end(),
                       [&](const PoolStatus& p) { return p.name == name; });
  }

  AdminBackend* const backend_;
  const DecisionLog* const decisions_;
};

AdminServer::AdminServer(std::string path, std::unique_ptr<Service> service,
                         std::unique_ptr<grpc::Server> server)
    : path_(std::move(path)), service_(std::move(service)), server_(std::move(server)) {}

absl::StatusOr<std::unique_ptr<AdminServer>> AdminServer::Start(const std::string& path,
                                                                AdminBackend* backend,
                                                                const DecisionLog* decisions) {
  auto service = std::make_unique<Service>(backend, decisions);
  grpc::ServerBuilder builder;
  builder.RegisterService(service.get());
  auto server = cri::StartOnUnixSocket(&builder, path, 0600);  // root only
  if (!server.ok()) {
    return absl::Status(server.status().code(),
                        "admin socket: " + std::string(server.status().message()));
  }
  return std::unique_ptr<AdminServer>(
      new AdminServer(path, std::move(service), std::move(*server)));
}

void AdminServer::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  // Handlers answer inline, so a short grace is plenty; a client that stalls
  // reading its answer is cancelled.
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server_->Wait();
  if (unlink(path_.c_str()) != 0 && errno != ENOENT) {
    spdlog::warn("cannot remove the admin socket {}: {}", path_, std::strerror(errno));
  }
}

AdminServer::~AdminServer() { Shutdown(); }

}  // namespace warmpool
