#include "daemon/failpoint.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdlib>

namespace warmpool {

const std::string& ArmedFailPoint() {
  static const std::string armed = [] {
    const char* v = std::getenv("WARMPOOL_FAILPOINT");
    return std::string(v != nullptr ? v : "");
  }();
  return armed;
}

void MaybeFail(std::string_view name) {
  const std::string& armed = ArmedFailPoint();
  if (armed.empty() || armed != name) return;
  spdlog::critical("fail point {} reached: SIGKILL (WARMPOOL_FAILPOINT, tests only)", name);
  spdlog::default_logger()->flush();
  ::kill(::getpid(), SIGKILL);  // the whole process, whichever thread gets here
  ::pause();                    // not reached
}

}  // namespace warmpool
