#pragma once

// The admin API (proto/warmpool_admin.proto) on warmpoold's second unix
// socket, the one warmpoolctl talks to. Root only: the socket is mode 0600.

#include <absl/status/statusor.h>
#include <grpcpp/server.h>

#include <memory>
#include <string>
#include <vector>

#include "daemon/decisions.h"
#include "daemon/pool_types.h"
#include "warmpool_admin.pb.h"

namespace warmpool {

// Where the admin API gets its answers: the pool manager, or a fake in tests.
// Called from gRPC threads, concurrently: implementations are thread-safe,
// return copies, and never block for longer than taking a lock.
class AdminBackend {
 public:
  virtual ~AdminBackend() = default;
  // Every pool, in config order; pools being drained included.
  virtual std::vector<PoolStatus> Pools() = 0;
  // Every entry of every pool, in any order.
  virtual std::vector<EntryInfo> Entries() = 0;
  // `warmpoolctl drain` / `fill` (see PoolManager). The status right after.
  // Default: UNIMPLEMENTED.
  virtual absl::StatusOr<PoolStatus> Drain(const std::string& pool);
  virtual absl::StatusOr<PoolStatus> Fill(const std::string& pool);
};

// Serves the Admin service on a unix socket.
//
// Start creates the socket's parent directory, replaces a stale socket file,
// refuses to start when a live process serves the path, and leaves the socket
// with mode 0600 (never more open, not even while it is being created).
// Shutdown finishes in-flight calls (they never block) and removes the
// socket; the destructor shuts down. `backend` must outlive the server.
class AdminServer {
 public:
  // `decisions` (may be null: Explain is UNIMPLEMENTED) must outlive the
  // server too.
  static absl::StatusOr<std::unique_ptr<AdminServer>> Start(const std::string& path,
                                                            AdminBackend* backend,
                                                            const DecisionLog* decisions = nullptr);
  ~AdminServer();

  void Shutdown();
  const std::string& path() const { return path_; }

 private:
  class Service;
  AdminServer(std::string path, std::unique_ptr<Service> service,
              std::unique_ptr<grpc::Server> server);

  std::string path_;
  std::unique_ptr<Service> service_;  // outlives server_
  std::unique_ptr<grpc::Server> server_;
  bool shut_down_ = false;
};

// The wire form of the snapshots, shared by the server and its tests.
admin::v1::EntryState ToProto(EntryState state);
admin::v1::PoolStatus ToProto(const PoolStatus& pool);
admin::v1::Entry ToProto(const EntryInfo& entry);
admin::v1::Decision ToProto(const Decision& decision);

}  // namespace warmpool
