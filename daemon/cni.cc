#include "daemon/cni.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace warmpool {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string Join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

struct ExecResult {
  int exit_code = -1;
  std::string out;
};

// Runs `binary` with `env`, feeding `input` on stdin; stdout collected,
// stderr discarded (plugins log there). Killed at `deadline`.
absl::StatusOr<ExecResult> Exec(const std::string& binary, const std::vector<std::string>& env,
                                const std::string& input, Clock::time_point deadline) {
  // stdin is a socket so that writing to a plugin that exited early is EPIPE
  // (MSG_NOSIGNAL), never SIGPIPE.
  int in[2], out[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) != 0) {
    return absl::InternalError(std::string("socketpair: ") + strerror(errno));
  }
  if (pipe2(out, O_CLOEXEC) != 0) {
    close(in[0]);
    close(in[1]);
    return absl::InternalError(std::string("pipe: ") + strerror(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // gRPC threads block signals; the plugin must start with none blocked.
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  std::vector<char*> envp;
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  char* argv[] = {const_cast<char*>(binary.c_str()), nullptr};
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, binary.c_str(), &actions, &attr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(in[0]);
  close(out[1]);
  if (rc != 0) {
    close(in[1]);
    close(out[0]);
    return absl::InternalError("exec " + binary + ": " + strerror(rc));
  }
  size_t sent = 0;
  while (sent < input.size()) {
    ssize_t n = ::send(in[1], input.data() + sent, input.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    sent += n;
  }
  close(in[1]);
  ExecResult result;
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) continue;
    char buf[4096];
    ssize_t got = read(out[0], buf, sizeof(buf));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    result.out.append(buf, got);
  }
  close(out[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) return absl::DeadlineExceededError(binary + " timed out");
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

absl::StatusOr<std::string> FindPlugin(const std::string& type, const CniPaths& paths) {
  if (type.empty() || type.find('/') != std::string::npos || type == "." || type == "..") {
    return absl::InvalidArgumentError("invalid plugin type \"" + type + "\"");
  }
  for (const auto& dir : paths.bin_dirs) {
    const std::string candidate = dir + "/" + type;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return absl::NotFoundError("CNI plugin \"" + type + "\" not found in " +
                             Join(paths.bin_dirs, ":"));
}

// The config plugin `plugin` of list `list` gets (spec: "Deriving execution
// configuration").
std::string PluginConfig(const json& list, const json& plugin, const json& caps,
                         const json* prev_result) {
  json conf = plugin;
  conf["name"] = list.value("name", "");
  conf["cniVersion"] = list.value("cniVersion", "");
  if (prev_result != nullptr && !prev_result->is_null()) conf["prevResult"] = *prev_result;
  json runtime = json::object();
  if (plugin.contains("capabilities") && plugin["capabilities"].is_object()) {
    for (const auto& [name, enabled] : plugin["capabilities"].items()) {
      if (enabled.is_boolean() && enabled.get<bool>() && caps.contains(name)) {
        runtime[name] = caps[name];
      }
    }
  }
  if (!runtime.empty()) conf["runtimeConfig"] = runtime;
  return conf.dump();
}

absl::StatusOr<std::string> RunPlugin(const std::string& command, const json& list,
                                      const json& plugin, const CniInvocation& inv,
                                      const json& caps, const json* prev_result,
                                      const CniPaths& paths) {
  const std::string type = plugin.value("type", "");
  auto binary = FindPlugin(type, paths);
  if (!binary.ok()) return binary.status();
  const char* path_env = getenv("PATH");
  std::vector<std::string> env = {
      "CNI_COMMAND=" + command,
      "CNI_CONTAINERID=" + inv.container_id,
      "CNI_NETNS=" + inv.netns,
      "CNI_IFNAME=" + inv.ifname,
      "CNI_ARGS=" + inv.args,
      "CNI_PATH=" + Join(paths.bin_dirs, ":"),
      std::string("PATH=") +
          (path_env && *path_env ? path_env : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
  };
  auto run = Exec(*binary, env, PluginConfig(list, plugin, caps, prev_result),
                  Clock::now() + paths.plugin_timeout);
  if (!run.ok()) return run.status();
  if (run->exit_code != 0) {
    std::string why = "exit " + std::to_string(run->exit_code);
    json err = json::parse(run->out, nullptr, false);
    if (err.is_object()) {
      why = err.value("msg", why);
      const std::string details = err.value("details", "");
      if (!details.empty()) why += ": " + details;
      if (err.contains("code")) why += " (code " + err["code"].dump() + ")";
    }
    return absl::UnavailableError("CNI " + command + " " + type + ": " + why);
  }
  return run->out;
}

absl::StatusOr<json> ParseList(const std::string& conflist) {
  json list = json::parse(conflist, nullptr, false);
  if (!list.is_object() || !list.contains("plugins") || !list["plugins"].is_array() ||
      list["plugins"].empty()) {
    return absl::InvalidArgumentError("not a CNI network configuration list");
  }
  return list;
}

}  // namespace

std::vector<std::string> SplitCniPath(const std::string& path) {
  std::vector<std::string> out;
  std::stringstream ss(path);
  std::string part;
  while (std::getline(ss, part, ':')) {
    if (!part.empty()) out.push_back(part);
  }
  return out;
}

absl::StatusOr<std::string> LoadCniConfList(const std::string& conf_dir) {
  std::error_code ec;
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(conf_dir, ec)) {
    const std::string ext = e.path().extension().string();
    if (ext == ".conflist" || ext == ".conf" || ext == ".json") files.push_back(e.path().string());
  }
  if (ec) return absl::NotFoundError("CNI conf dir " + conf_dir + ": " + ec.message());
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    json conf = json::parse(text.str(), nullptr, false);
    if (!conf.is_object()) continue;
    if (file.size() > 9 && file.substr(file.size() - 9) == ".conflist") {
      if (!conf.contains("plugins") || !conf["plugins"].is_array() || conf["plugins"].empty()) {
        continue;
      }
      return conf.dump();
    }
    if (!conf.contains("type")) continue;
    json list = {{"cniVersion", conf.value("cniVersion", "")},
                 {"name", conf.value("name", "")},
                 {"plugins", json::array({conf})}};
    return list.dump();
  }
  return absl::NotFoundError("no CNI network configuration in " + conf_dir);
}

absl::StatusOr<std::string> CniAdd(const std::string& conflist, const CniInvocation& inv,
                                   const CniPaths& paths) {
  auto list = ParseList(conflist);
  if (!list.ok()) return list.status();
  json caps = json::parse(inv.capability_args, nullptr, false);
  if (!caps.is_object()) caps = json::object();
  json prev;  // null: none yet
  for (const json& plugin : (*list)["plugins"]) {
    auto out = RunPlugin("ADD", *list, plugin, inv, caps, &prev, paths);
    if (!out.ok()) return out.status();
    json result = json::parse(*out, nullptr, false);
    if (!result.is_object()) {
      return absl::UnavailableError("CNI ADD " + plugin.value("type", "") +
                                    ": result is not JSON");
    }
    prev = std::move(result);
  }
  return prev.dump();
}

absl::Status CniDel(const std::string& conflist, const CniInvocation& inv,
                    const std::string& prev_result, const CniPaths& paths) {
  auto list = ParseList(conflist);
  if (!list.ok()) return list.status();
  json caps = json::parse(inv.capability_args, nullptr, false);
  if (!caps.is_object()) caps = json::object();
  json prev = prev_result.empty() ? json() : json::parse(prev_result, nullptr, false);
  if (prev.is_discarded()) prev = json();
  absl::Status first;
  const json& plugins = (*list)["plugins"];
  for (auto it = plugins.rbegin(); it != plugins.rend(); ++it) {
    auto out = RunPlugin("DEL", *list, *it, inv, caps, &prev, paths);
    if (!out.ok() && first.ok()) first = out.status();
  }
  return first;
}

std::vector<std::string> CniResultIps(const std::string& result, const std::string& ifname) {
  json r = json::parse(result, nullptr, false);
  std::vector<std::string> v4, v6;
  if (!r.is_object() || !r.contains("ips") || !r["ips"].is_array()) return {};
  const json interfaces = r.value("interfaces", json::array());
  for (const json& ip : r["ips"]) {
    if (!ip.is_object() || !ip.contains("address") || !ip["address"].is_string()) continue;
    if (ip.contains("interface") && ip["interface"].is_number_integer() && interfaces.is_array()) {
      const int index = ip["interface"].get<int>();
      if (index < 0 || index >= static_cast<int>(interfaces.size()) ||
          interfaces[index].value("name", "") != ifname) {
        continue;
      }
    } else {
      continue;  // containerd counts only addresses tied to the interface
    }
    std::string address = ip["address"].get<std::string>();
    address = address.substr(0, address.find('/'));
    (address.find(':') == std::string::npos ? v4 : v6).push_back(address);
  }
  v4.insert(v4.end(), v6.begin(), v6.end());
  return v4;
}

}  // namespace warmpool
