// warmpoolctl: ask warmpoold about its pools over the admin socket.
//
//   warmpoolctl [--admin SOCK] pools   [-o table|json]
//   warmpoolctl [--admin SOCK] entries [--pool NAME] [-o table|json]
//   warmpoolctl [--admin SOCK] explain POD [-o table|json]
//   warmpoolctl [--admin SOCK] drain POOL [--wait [--timeout S]] [-o table|json]
//   warmpoolctl [--admin SOCK] fill POOL [--wait [--timeout S]] [-o table|json]
//
// Exit status: 0 done, 1 warmpoold unreachable, the call failed, explain
// knows nothing about the pod, or --wait timed out; 2 usage.

#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>

#include "daemon/ctl_format.h"
#include "warmpool_admin.grpc.pb.h"

namespace {

using warmpool::admin::v1::Admin;

constexpr std::chrono::seconds kDeadline(5);

// Connects once to the unix socket at `path`: 0 when something listens,
// otherwise the errno, which says far more precisely than gRPC's UNAVAILABLE
// why warmpoold cannot be reached (no socket, not root, stale socket).
int ProbeSocket(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return errno;
  if (!S_ISSOCK(st.st_mode)) return ENOTSOCK;
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) return ENAMETOOLONG;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  const int rc = connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  const int err = rc == 0 ? 0 : errno;
  close(fd);
  return err;
}

std::string SocketPath(std::string admin) {
  for (const char* prefix : {"unix://", "unix:"}) {
    if (admin.starts_with(prefix)) return admin.substr(std::strlen(prefix));
  }
  return admin;
}

int Fail(const std::string& line) {
  std::cerr << line << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"warmpoolctl: inspect warmpoold's pools of frozen pod sandboxes"};
  app.require_subcommand(1);

  std::string admin = "/run/warmpool/admin.sock";
  app.add_option("--admin", admin, "warmpoold's admin socket ([daemon] admin)")
      ->capture_default_str()
      ->envname("WARMPOOL_ADMIN");

  std::string output = "table";

  CLI::App* pools = app.add_subcommand("pools", "Per pool: target, entries by state, memory");
  pools->add_option("-o,--output", output, "table (for people) or json (for scripts)")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();

  std::string pool;
  CLI::App* entries = app.add_subcommand("entries", "Pool entries: state, age, sandbox, memory");
  entries->add_option("--pool", pool, "only the entries of this pool");
  entries->add_option("-o,--output", output, "table (for people) or json (for scripts)")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();

  std::string pod;
  CLI::App* explain = app.add_subcommand(
      "explain", "Was POD served by a pool, and if not, why (POD: namespace/name, uid, or name)");
  explain->add_option("POD", pod, "namespace/name, the pod's uid, or a name in default")
      ->required();
  explain->add_option("-o,--output", output, "table (for people) or json (for scripts)")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();

  std::string target_pool;
  bool wait = false;
  int timeout_seconds = 120;
  CLI::App* drain =
      app.add_subcommand("drain", "Stop refilling POOL and remove its frozen entries (until fill)");
  CLI::App* fill =
      app.add_subcommand("fill", "Undo a drain of POOL and refill it now (clears a back-off)");
  for (CLI::App* cmd : {drain, fill}) {
    cmd->add_option("POOL", target_pool, "the pool's name")->required();
    cmd->add_flag("--wait", wait,
                  cmd == drain ? "wait until the pool has no entry left"
                               : "wait until the pool is full (frozen = target)");
    cmd->add_option("--timeout", timeout_seconds, "seconds --wait waits at most")
        ->check(CLI::Range(1, 3600))
        ->capture_default_str();
    cmd->add_option("-o,--output", output, "table (for people) or json (for scripts)")
        ->check(CLI::IsMember({"table", "json"}))
        ->capture_default_str();
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

  const std::string path = SocketPath(admin);
  if (const int err = ProbeSocket(path); err != 0) {
    return Fail(warmpool::ctl::DescribeConnectError(path, err));
  }
  auto stub =
      Admin::NewStub(grpc::CreateChannel("unix:" + path, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kDeadline);

  if (pools->parsed()) {
    warmpool::admin::v1::ListPoolsResponse response;
    grpc::Status status = stub->ListPools(&context, {}, &response);
    if (!status.ok()) return Fail(warmpool::ctl::DescribeRpcError(path, status, kDeadline));
    std::cout << (output == "json" ? warmpool::ctl::FormatPoolsJson(response)
                                   : warmpool::ctl::FormatPoolsTable(response));
  } else if (entries->parsed()) {
    warmpool::admin::v1::ListEntriesRequest request;
    request.set_pool(pool);
    warmpool::admin::v1::ListEntriesResponse response;
    grpc::Status status = stub->ListEntries(&context, request, &response);
    if (!status.ok()) return Fail(warmpool::ctl::DescribeRpcError(path, status, kDeadline));
    std::cout << (output == "json" ? warmpool::ctl::FormatEntriesJson(response)
                                   : warmpool::ctl::FormatEntriesTable(
                                         response, std::chrono::system_clock::now()));
  } else if (explain->parsed()) {
    warmpool::admin::v1::ExplainRequest request;
    request.set_pod(pod);
    warmpool::admin::v1::ExplainResponse response;
    grpc::Status status = stub->Explain(&context, request, &response);
    if (!status.ok()) return Fail(warmpool::ctl::DescribeRpcError(path, status, kDeadline));
    std::cout << (output == "json" ? warmpool::ctl::FormatExplainJson(pod, response)
                                   : warmpool::ctl::FormatExplainTable(
                                         pod, response, std::chrono::system_clock::now()));
    std::cout.flush();
    if (response.decisions().empty()) return 1;
  } else {
    const bool draining = drain->parsed();
    warmpool::admin::v1::PoolStatus result;
    grpc::Status status;
    if (draining) {
      warmpool::admin::v1::DrainRequest request;
      request.set_pool(target_pool);
      warmpool::admin::v1::DrainResponse response;
      status = stub->Drain(&context, request, &response);
      result = response.pool();
    } else {
      warmpool::admin::v1::FillRequest request;
      request.set_pool(target_pool);
      warmpool::admin::v1::FillResponse response;
      status = stub->Fill(&context, request, &response);
      result = response.pool();
    }
    if (!status.ok()) return Fail(warmpool::ctl::DescribeRpcError(path, status, kDeadline));
    // --wait: poll the pool until drained empty / filled to target.
    auto done = [&](const warmpool::admin::v1::PoolStatus& p) {
      return draining ? p.frozen() + p.warming() + p.creating() == 0 : p.frozen() >= p.target();
    };
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
    while (wait && !done(result)) {
      if (std::chrono::steady_clock::now() >= give_up) {
        std::cerr << "warmpoolctl: pool " << target_pool << " not " << (draining ? "empty" : "full")
                  << " after " << timeout_seconds << "s: " << result.frozen() << " frozen, "
                  << result.warming() << " warming, " << result.creating() << " creating"
                  << (result.last_error().empty() ? "" : "; last error: " + result.last_error())
                  << "\n";
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      grpc::ClientContext poll;
      poll.set_deadline(std::chrono::system_clock::now() + kDeadline);
      warmpool::admin::v1::ListPoolsResponse pools_now;
      status = stub->ListPools(&poll, {}, &pools_now);
      if (!status.ok()) return Fail(warmpool::ctl::DescribeRpcError(path, status, kDeadline));
      bool found = false;
      for (const auto& p : pools_now.pools()) {
        if (p.name() == target_pool) {
          result = p;
          found = true;
        }
      }
      if (!found) return Fail("warmpoolctl: pool " + target_pool + " is gone");
    }
    if (output == "json") {
      std::cout << warmpool::ctl::FormatPoolJson(result);
    } else {
      std::cout << (draining ? warmpool::ctl::FormatDrainLine(result)
                             : warmpool::ctl::FormatFillLine(result));
    }
  }
  std::cout.flush();
  return std::cout ? 0 : 1;
}
