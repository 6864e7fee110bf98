// warmpoolctl: ask warmpoold about its pools over the admin socket.
//
//   warmpoolctl [--admin SOCK] pools   [-o table|json]
//   warmpoolctl [--admin SOCK] entries [--pool NAME] [-o table|json]
//
// Exit status: 0 done, 1 warmpoold unreachable or the call failed, 2 usage.

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
  } else {
    warmpool::admin::v1::ListEntriesRequest request;
    request.set_pool(pool);
    warmpool::admin::v1::ListEntriesResponse response;
    grpc::Status status = stub->ListEntries(&context, request, &response);
    if (!status.ok()) return Fail(warmpool::ctl::DescribeRpcError(path, status, kDeadline));
    std::cout << (output == "json" ? warmpool::ctl::FormatEntriesJson(response)
                                   : warmpool::ctl::FormatEntriesTable(
                                         response, std::chrono::system_clock::now()));
  }
  std::cout.flush();
  return std::cout ? 0 : 1;
}
