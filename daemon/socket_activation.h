// systemd socket activation: the CRI socket passed to warmpoold already bound
// and listening (warmpool.socket), the way systemd passes sockets: fds from 3
// on, LISTEN_FDS=<count>, LISTEN_PID=<warmpoold's pid>, optional
// LISTEN_FDNAMES. Lets systemd create /run/warmpool/warmpool.sock before
// warmpoold runs, so kubelet can start (and connect) in parallel, and keeps
// the socket open across warmpoold restarts.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace warmpool {

struct ActivationSocket {
  int fd = -1;
  std::string path;  // as bound by systemd
  // A note for the log when the passed socket is not `daemon.listen`.
  std::string warning;
};

// Takes the sockets systemd passed (and unsets LISTEN_* so no child of
// warmpoold sees them). Returns nullopt when none were passed (warmpoold then
// binds daemon.listen itself); the passed unix stream listening socket bound
// to `listen` (a path or unix:// URI), or, if only one was passed, that one
// whatever its path. Passed fds it does not use are closed. An error when
// sockets were passed but none can serve the CRI.
absl::StatusOr<std::optional<ActivationSocket>> TakeActivationSocket(const std::string& listen);

}  // namespace warmpool
