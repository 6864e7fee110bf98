#pragma once

// A CNI runtime of warmpoold's own, following the CNI spec (1.0, "Section 4:
// Plugin Delegation" and "Deriving execution configuration"), as libcni does
// for containerd: warmpoold runs the node's network conflist itself when it
// binds a late-network pool sandbox to its pod (daemon/late_network.h).
//
//   ADD: the plugins in list order; plugin i gets the list's name and
//        cniVersion, `prevResult` = plugin i-1's result (none for the
//        first), and `runtimeConfig` = the capability arguments it declares
//        in its `capabilities` (portMappings, bandwidth, dns, ...). The last
//        plugin's result is the list's result.
//   DEL: the plugins in reverse order, each with prevResult = the list's ADD
//        result when known (empty when the ADD never finished: plugins must
//        cope, host-local releases by container id and ifname). Every plugin
//        runs even if one fails (so the IP is released whatever portmap
//        says); the first error is returned. DEL is idempotent.
// Each plugin is exec'd (posix_spawn) from the first directory of the bin
// path that has it, with CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME,
// CNI_ARGS, CNI_PATH and PATH (plugins run iptables) and nothing else of
// warmpoold's environment; the config on stdin, the result on stdout, an
// error as the spec's {"code","msg","details"}. Thread-safe (no state).

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include <chrono>
#include <string>
#include <vector>

namespace warmpool {

// One invocation's runtime parameters (the same for ADD and its DEL).
struct CniInvocation {
  std::string container_id;    // CNI_CONTAINERID
  std::string netns;           // CNI_NETNS: a path
  std::string ifname = "eth0";  // CNI_IFNAME
  std::string args;            // CNI_ARGS: "K=V;K=V"
  // JSON object of capability arguments ({"portMappings": [...], ...}); a
  // plugin gets those it declares in "capabilities" as its runtimeConfig.
  std::string capability_args = "{}";
};

// Where plugins are: directories searched in order (CNI_PATH).
struct CniPaths {
  std::vector<std::string> bin_dirs;
  std::chrono::milliseconds plugin_timeout{std::chrono::seconds(60)};
};

// The network config libcni would pick from `conf_dir`: the first file, by
// name, ending in .conflist, .conf or .json, that parses (a .conf/.json
// holding a single plugin is turned into a one-plugin list). Returns the
// conflist as JSON text. NotFound when the directory has none.
absl::StatusOr<std::string> LoadCniConfList(const std::string& conf_dir);

// ADD of every plugin of `conflist`; returns the final result (JSON text).
// On an error, plugins already run are NOT undone: the caller runs CniDel.
absl::StatusOr<std::string> CniAdd(const std::string& conflist, const CniInvocation& inv,
                                   const CniPaths& paths);

// DEL of every plugin of `conflist`, in reverse. `prev_result`: the ADD
// result ("" if unknown).
absl::Status CniDel(const std::string& conflist, const CniInvocation& inv,
                    const std::string& prev_result, const CniPaths& paths);

// The pod's IPs in a CNI result, as containerd reports them: the addresses
// of the interface named `ifname` (IPv4 first, then IPv6, in result order),
// prefix length stripped. Empty when none.
std::vector<std::string> CniResultIps(const std::string& result, const std::string& ifname);

// "a:b:c" -> {"a","b","c"} (CNI_PATH syntax; empty parts dropped).
std::vector<std::string> SplitCniPath(const std::string& path);

}  // namespace warmpool
