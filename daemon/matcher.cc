#include "daemon/matcher.h"

#include "daemon/late_network.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/unknown_field_set.h>

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/templates.h"

namespace warmpool {

namespace v1 = ::runtime::v1;
namespace pb = ::google::protobuf;

namespace {

// Values in reasons are cut to this many characters.
constexpr size_t kMaxValueChars = 96;

std::string Shorten(std::string s) {
  if (s.size() > kMaxValueChars) {
    s.resize(kMaxValueChars - 3);
    s += "...";
  }
  return s;
}

std::string Quote(const std::string& s) { return absl::StrCat("\"", absl::CEscape(s), "\""); }

std::string Join(const std::string& path, const std::string& name) {
  return path.empty() ? name : absl::StrCat(path, ".", name);
}

// The first difference found: where, and the pod's and the pool's values.
struct Difference {
  std::string path;
  std::string pod;
  std::string pool;
};

std::string ScalarText(const pb::Message& m, const pb::FieldDescriptor* f, int index);

// A message as "{field: value ...}". Unlike ShortDebugString, numbers and
// enums are shown even when 0 -- {profile_type: RuntimeDefault}, {value: 0}
// -- so a present message never reads as an empty "{}" when its zero
// values mean something; false bools and empty strings are left out.
std::string MessageText(const pb::Message& m) {
  const pb::Descriptor* d = m.GetDescriptor();
  const pb::Reflection* r = m.GetReflection();
  std::string out = "{";
  auto add = [&out](const std::string& item) {
    if (out.size() > 1) out += " ";
    out += item;
  };
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    if (f->is_repeated()) {
      for (int k = 0; k < r->FieldSize(m, f); ++k) {
        add(f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE
                ? absl::StrCat(f->name(), " ", ScalarText(m, f, k))
                : absl::StrCat(f->name(), ": ", ScalarText(m, f, k)));
      }
      continue;
    }
    switch (f->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_MESSAGE:
        if (r->HasField(m, f)) add(absl::StrCat(f->name(), " ", ScalarText(m, f, -1)));
        break;
      case pb::FieldDescriptor::CPPTYPE_BOOL:
        if (r->GetBool(m, f)) add(absl::StrCat(f->name(), ": true"));
        break;
      case pb::FieldDescriptor::CPPTYPE_STRING:
        if (!r->GetString(m, f).empty()) add(absl::StrCat(f->name(), ": ", ScalarText(m, f, -1)));
        break;
      default:
        add(absl::StrCat(f->name(), ": ", ScalarText(m, f, -1)));
    }
  }
  return out + "}";
}

std::string EnumText(const pb::FieldDescriptor* f, int value) {
  const pb::EnumValueDescriptor* v = f->enum_type()->FindValueByNumber(value);
  return v != nullptr ? v->name() : absl::StrCat(value);
}

// Text of a scalar field's value; index < 0 for a singular field.
std::string ScalarText(const pb::Message& m, const pb::FieldDescriptor* f, int index) {
  const pb::Reflection* r = m.GetReflection();
  const bool rep = index >= 0;
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
      return absl::StrCat(rep ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f));
    case pb::FieldDescriptor::CPPTYPE_INT64:
      return absl::StrCat(rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f));
    case pb::FieldDescriptor::CPPTYPE_UINT32:
      return absl::StrCat(rep ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f));
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      return absl::StrCat(rep ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f));
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      return absl::StrCat(rep ? r->GetRepeatedDouble(m, f, index) : r->GetDouble(m, f));
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
      return absl::StrCat(rep ? r->GetRepeatedFloat(m, f, index) : r->GetFloat(m, f));
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      return (rep ? r->GetRepeatedBool(m, f, index) : r->GetBool(m, f)) ? "true" : "false";
    case pb::FieldDescriptor::CPPTYPE_ENUM:
      return EnumText(f, rep ? r->GetRepeatedEnumValue(m, f, index) : r->GetEnumValue(m, f));
    case pb::FieldDescriptor::CPPTYPE_STRING:
      return Quote(rep ? r->GetRepeatedString(m, f, index) : r->GetString(m, f));
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      return MessageText(rep ? r->GetRepeatedMessage(m, f, index) : r->GetMessage(m, f));
  }
  return "?";
}

std::optional<Difference> DiffMessages(const pb::Message& pod, const pb::Message& pool,
                                       const std::string& path);

// A map field as key text -> entry message, ordered by key.
std::map<std::string, const pb::Message*> MapEntries(const pb::Message& m,
                                                     const pb::FieldDescriptor* f) {
  std::map<std::string, const pb::Message*> out;
  const pb::Reflection* r = m.GetReflection();
  const pb::FieldDescriptor* key = f->message_type()->map_key();
  for (int i = 0; i < r->FieldSize(m, f); ++i) {
    const pb::Message& entry = r->GetRepeatedMessage(m, f, i);
    out[ScalarText(entry, key, -1)] = &entry;
  }
  return out;
}

std::optional<Difference> DiffMap(const pb::Message& pod, const pb::Message& pool,
                                  const pb::FieldDescriptor* f, const std::string& path) {
  const std::map<std::string, const pb::Message*> a = MapEntries(pod, f);
  const std::map<std::string, const pb::Message*> b = MapEntries(pool, f);
  const pb::FieldDescriptor* value = f->message_type()->map_value();
  auto ia = a.begin();
  auto ib = b.begin();
  while (ia != a.end() || ib != b.end()) {
    if (ib == b.end() || (ia != a.end() && ia->first < ib->first)) {
      return Difference{absl::StrCat(path, "[", ia->first, "]"), ScalarText(*ia->second, value, -1),
                        "none"};
    }
    if (ia == a.end() || ib->first < ia->first) {
      return Difference{absl::StrCat(path, "[", ib->first, "]"), "none",
                        ScalarText(*ib->second, value, -1)};
    }
    const std::string entry_path = absl::StrCat(path, "[", ia->first, "]");
    if (value->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      const pb::Reflection* r = ia->second->GetReflection();
      auto d = DiffMessages(r->GetMessage(*ia->second, value), r->GetMessage(*ib->second, value),
                            entry_path);
      if (d) return d;
    } else {
      std::string va = ScalarText(*ia->second, value, -1);
      std::string vb = ScalarText(*ib->second, value, -1);
      if (va != vb) return Difference{entry_path, std::move(va), std::move(vb)};
    }
    ++ia;
    ++ib;
  }
  return std::nullopt;
}

// Field by field in declaration order; presence of singular messages matters.
std::optional<Difference> DiffMessages(const pb::Message& pod, const pb::Message& pool,
                                       const std::string& path) {
  const pb::Descriptor* d = pod.GetDescriptor();
  const pb::Reflection* r = pod.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    const std::string fpath = Join(path, f->name());
    if (f->is_map()) {
      if (auto diff = DiffMap(pod, pool, f, fpath)) return diff;
      continue;
    }
    if (f->is_repeated()) {
      const int na = r->FieldSize(pod, f);
      const int nb = r->FieldSize(pool, f);
      for (int k = 0; k < std::max(na, nb); ++k) {
        const std::string epath = absl::StrCat(fpath, "[", k, "]");
        if (k >= na) return Difference{epath, "none", ScalarText(pool, f, k)};
        if (k >= nb) return Difference{epath, ScalarText(pod, f, k), "none"};
        if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
          auto diff = DiffMessages(r->GetRepeatedMessage(pod, f, k),
                                   r->GetRepeatedMessage(pool, f, k), epath);
          if (diff) return diff;
        } else {
          std::string va = ScalarText(pod, f, k);
          std::string vb = ScalarText(pool, f, k);
          if (va != vb) return Difference{epath, std::move(va), std::move(vb)};
        }
      }
      continue;
    }
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      const bool ha = r->HasField(pod, f);
      const bool hb = r->HasField(pool, f);
      if (!ha && !hb) continue;
      if (ha != hb) {
        return Difference{fpath, ha ? MessageText(r->GetMessage(pod, f)) : "absent",
                          hb ? MessageText(r->GetMessage(pool, f)) : "absent"};
      }
      if (auto diff = DiffMessages(r->GetMessage(pod, f), r->GetMessage(pool, f), fpath)) {
        return diff;
      }
      continue;
    }
    std::string va = ScalarText(pod, f, -1);
    std::string vb = ScalarText(pool, f, -1);
    if (va != vb) return Difference{fpath, std::move(va), std::move(vb)};
  }
  return std::nullopt;
}

// The first protobuf unknown field (or undeclared enum value) in `m` or any
// message below it, described; nullopt if there is none.
std::optional<std::string> FindUnknown(const pb::Message& m, const std::string& path) {
  const pb::Reflection* r = m.GetReflection();
  const std::string where = path.empty() ? "the request" : path;
  const pb::UnknownFieldSet& unknown = r->GetUnknownFields(m);
  if (!unknown.empty()) {
    return absl::StrCat("unknown field ", unknown.field(0).number(), " in ", where,
                        " (a newer kubelet?)");
  }
  std::vector<const pb::FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  for (const pb::FieldDescriptor* f : fields) {
    const std::string fpath = Join(path, f->name());
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_ENUM) {
      const int n = f->is_repeated() ? r->FieldSize(m, f) : 1;
      for (int k = 0; k < n; ++k) {
        const int v = f->is_repeated() ? r->GetRepeatedEnumValue(m, f, k) : r->GetEnumValue(m, f);
        if (f->enum_type()->FindValueByNumber(v) == nullptr) {
          return absl::StrCat("unknown value ", v, " of enum ", fpath, " (a newer kubelet?)");
        }
      }
      continue;
    }
    if (f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->is_map()) {
      // Map entries: only a message-typed value can hold more fields.
      const pb::FieldDescriptor* value = f->message_type()->map_value();
      for (int k = 0; k < r->FieldSize(m, f); ++k) {
        const pb::Message& entry = r->GetRepeatedMessage(m, f, k);
        if (value->cpp_type() == pb::FieldDescriptor::CPPTYPE_ENUM ||
            value->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
          if (auto u = FindUnknown(entry, absl::StrCat(fpath, "[", k, "]"))) return u;
        }
      }
      continue;
    }
    if (f->is_repeated()) {
      for (int k = 0; k < r->FieldSize(m, f); ++k) {
        if (auto u =
                FindUnknown(r->GetRepeatedMessage(m, f, k), absl::StrCat(fpath, "[", k, "]"))) {
          return u;
        }
      }
      continue;
    }
    if (auto u = FindUnknown(r->GetMessage(m, f), fpath)) return u;
  }
  return std::nullopt;
}

// The pool config value ([pool.sandbox] seccomp / apparmor) that creates a
// profile equal to `p` (absent when !present).
std::string ProfileSetting(bool present, const v1::SecurityProfile& p) {
  if (!present) return "";
  switch (p.profile_type()) {
    case v1::SecurityProfile::RuntimeDefault:
      return "runtime/default";
    case v1::SecurityProfile::Unconfined:
      return "unconfined";
    case v1::SecurityProfile::Localhost:
      return absl::StrCat("localhost/", p.localhost_ref());
    default:
      return absl::StrCat("<profile type ", p.profile_type(), ">");
  }
}

// What to put in the pool config to serve pods like this one, for the
// profile fields; "" for other paths.
template <typename SecurityContext>
std::string ProfileHint(const std::string& path, const std::string& sc_path,
                        const SecurityContext& sc) {
  auto hint = [](const char* key, const std::string& value) {
    return absl::StrCat("; set [pool.sandbox] ", key, " = ", Quote(value), " to serve such pods");
  };
  if (absl::StartsWith(path, sc_path + ".seccomp") &&
      !absl::StartsWith(path, sc_path + ".seccomp_profile_path")) {
    return hint("seccomp", ProfileSetting(sc.has_seccomp(), sc.seccomp()));
  }
  if (absl::StartsWith(path, sc_path + ".apparmor") &&
      !absl::StartsWith(path, sc_path + ".apparmor_profile")) {
    return hint("apparmor", ProfileSetting(sc.has_apparmor(), sc.apparmor()));
  }
  return "";
}

// Rewrites the parts of a security context that are equal in effect to a
// canonical form (see matcher.h, "Semantics").
template <typename SecurityContext>
void NormalizeSecurityContext(SecurityContext* sc) {
  if (sc->has_namespace_options() && sc->namespace_options().has_userns_options()) {
    const v1::UserNamespace& u = sc->namespace_options().userns_options();
    if (u.mode() == v1::NODE && u.uids_size() == 0 && u.gids_size() == 0) {
      sc->mutable_namespace_options()->clear_userns_options();
    }
  }
  if (sc->has_seccomp()) sc->clear_seccomp_profile_path();
  auto* groups = sc->mutable_supplemental_groups();
  std::sort(groups->begin(), groups->end());
  groups->erase(std::unique(groups->begin(), groups->end()), groups->end());
}

void ClearSandboxFixable(v1::RunPodSandboxRequest* req) {
  if (!req->has_config()) return;
  v1::PodSandboxConfig* c = req->mutable_config();
  c->clear_metadata();
  c->clear_hostname();
  c->clear_log_directory();
  c->clear_dns_config();
  c->clear_labels();
  c->clear_annotations();
  // Mappings without a host port: containerd drops them before CNI.
  auto* ports = c->mutable_port_mappings();
  ports->erase(std::remove_if(ports->begin(), ports->end(),
                              [](const v1::PortMapping& p) { return p.host_port() <= 0; }),
               ports->end());
  if (!c->has_linux()) return;
  v1::LinuxPodSandboxConfig* linux = c->mutable_linux();
  linux->clear_cgroup_parent();
  linux->clear_resources();
  linux->clear_overhead();
  if (linux->has_security_context()) NormalizeSecurityContext(linux->mutable_security_context());
}

void ClearContainerFixable(v1::ContainerConfig* c) {
  c->clear_metadata();
  c->clear_labels();
  c->clear_annotations();
  c->clear_mounts();
  c->clear_log_path();
  c->clear_image();  // checked before, on its own
  c->clear_envs();   // checked before, on its own
  if (!c->has_linux()) return;
  v1::LinuxContainerConfig* linux = c->mutable_linux();
  linux->clear_resources();
  if (linux->has_security_context()) {
    v1::LinuxContainerSecurityContext* sc = linux->mutable_security_context();
    NormalizeSecurityContext(sc);
    if (sc->has_apparmor()) sc->clear_apparmor_profile();
  }
}

std::string SandboxReasonCode(const std::string& path) {
  if (absl::StartsWith(path, "runtime_handler")) return "runtime_handler";
  if (absl::StartsWith(path, "config.linux.security_context.namespace_options")) {
    return "namespace_options";
  }
  if (absl::StartsWith(path, "config.linux.security_context")) return "security_context";
  if (absl::StartsWith(path, "config.linux.sysctls")) return "sysctls";
  if (absl::StartsWith(path, "config.port_mappings")) return "port_mappings";
  if (absl::StartsWith(path, "config.windows")) return "windows";
  return "template";
}

std::string ContainerReasonCode(const std::string& path) {
  static const std::pair<const char*, const char*> kCodes[] = {
      {"config.linux.security_context.namespace_options", "namespace_options"},
      {"config.linux.security_context", "security_context"},
      {"config.command", "command"},
      {"config.args", "args"},
      {"config.working_dir", "working_dir"},
      {"config.stdin", "stdin"},  // also stdin_once
      {"config.tty", "tty"},
      {"config.devices", "devices"},
      {"config.CDI_devices", "devices"},
      {"config.stop_signal", "stop_signal"},
      {"config.windows", "windows"},
  };
  for (const auto& [prefix, code] : kCodes) {
    if (absl::StartsWith(path, prefix)) return code;
  }
  return "template";
}

MatchResult Miss(MatchResult r, std::string code, std::string reason) {
  r.hit = false;
  r.reason_code = std::move(code);
  r.reason = std::move(reason);
  return r;
}

std::string DifferenceText(const Difference& d) {
  return absl::StrCat(d.path, ": pod asks ", Shorten(d.pod), ", pool has ", Shorten(d.pool));
}

bool ConsumePrefix(std::string_view* s, std::string_view prefix) {
  if (!s->starts_with(prefix)) return false;
  s->remove_prefix(prefix.size());
  return true;
}

// "<n>_<TCP|UDP|SCTP>" optionally followed by "_PROTO", "_PORT" or "_ADDR".
bool IsPortSuffix(std::string_view s) {
  size_t digits = 0;
  while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
  if (digits == 0) return false;
  s.remove_prefix(digits);
  if (!ConsumePrefix(&s, "_")) return false;
  if (!ConsumePrefix(&s, "TCP") && !ConsumePrefix(&s, "UDP") && !ConsumePrefix(&s, "SCTP")) {
    return false;
  }
  return s.empty() || s == "_PROTO" || s == "_PORT" || s == "_ADDR";
}

}  // namespace

bool IsServiceLinkEnv(std::string_view key) {
  if (key.empty() || key[0] < 'A' || key[0] > 'Z') return false;
  for (char c : key) {
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  // Every split SVC + suffix with a non-empty SVC is a candidate: a service
  // name may itself contain "_PORT" or "_SERVICE".
  for (size_t at = key.find('_', 1); at != std::string_view::npos; at = key.find('_', at + 1)) {
    std::string_view rest = key.substr(at);
    if (rest == "_SERVICE_HOST" || rest == "_SERVICE_PORT" || rest == "_PORT") return true;
    if (ConsumePrefix(&rest, "_SERVICE_PORT_") && !rest.empty()) return true;
    rest = key.substr(at);
    if (ConsumePrefix(&rest, "_PORT_") && IsPortSuffix(rest)) return true;
  }
  return false;
}

MatchResult MatchSandbox(const v1::RunPodSandboxRequest& req,
                         const std::vector<PoolConfig>& pools) {
  MatchResult result;
  const auto& annotations = req.config().annotations();
  if (auto it = annotations.find(kPoolAnnotation); it != annotations.end()) {
    for (const PoolConfig& p : pools) {
      if (p.name == it->second) result.pool = &p;
    }
    if (result.pool == nullptr) {
      return Miss(result, "unknown_pool",
                  absl::StrCat("pod names pool ", Quote(it->second), " (annotation ",
                               kPoolAnnotation, "), which is not configured"));
    }
  } else {
    for (const PoolConfig& p : pools) {
      if (p.is_default) {
        result.pool = &p;
        break;
      }
    }
    if (result.pool == nullptr) {
      return Miss(result, "no_pool", "no pool: the pod names none and no pool is default");
    }
  }
  const PoolConfig& pool = *result.pool;
  const std::string& ns = req.config().metadata().namespace_();
  if (!pool.namespaces.empty() &&
      std::find(pool.namespaces.begin(), pool.namespaces.end(), ns) == pool.namespaces.end()) {
    return Miss(result, "namespace",
                absl::StrCat("pool ", Quote(pool.name), " does not serve namespace ", Quote(ns)));
  }
  if (auto unknown = FindUnknown(req, "")) return Miss(result, "unknown_field", *unknown);

  if (req.runtime_handler() != pool.sandbox.runtime_handler) {
    return Miss(result, "runtime_handler",
                DifferenceText({"runtime_handler", Quote(req.runtime_handler()),
                                Quote(pool.sandbox.runtime_handler)}));
  }
  v1::RunPodSandboxRequest pod = req;
  v1::RunPodSandboxRequest expected = SandboxRequest(pool, "x", "x", "", "");
  if (UsesLateNetwork(pool)) {
    // The pod's network is made at hand-off from its own request: host
    // ports (and bandwidth, dns) go to CNI as containerd would pass them.
    pod.mutable_config()->clear_port_mappings();
  } else if (pool.network == NetworkTiming::kEarly) {
    // An early entry's network was made without them: a shaped pod misses.
    for (const char* key : {"kubernetes.io/ingress-bandwidth", "kubernetes.io/egress-bandwidth"}) {
      if (req.config().annotations().count(key) != 0) {
        return Miss(result, "bandwidth",
                    absl::StrCat("config.annotations[", key, "]: pod asks ",
                                 Quote(req.config().annotations().at(key)),
                                 ", pool has network = \"early\" (no bandwidth shaping; use "
                                 "network = \"late\")"));
      }
    }
  }
  ClearSandboxFixable(&pod);
  ClearSandboxFixable(&expected);
  if (auto diff = DiffMessages(pod, expected, "")) {
    std::string reason = DifferenceText(*diff);
    const std::string code = SandboxReasonCode(diff->path);
    if (code == "security_context") {
      reason += ProfileHint(diff->path, "config.linux.security_context",
                            req.config().linux().security_context());
    } else if (code == "port_mappings") {
      reason += " (pool entries have no host ports; network = \"late\" serves them)";
    }
    return Miss(result, code, std::move(reason));
  }
  result.hit = true;
  return result;
}

MatchResult MatchContainer(const v1::ContainerConfig& config, const PoolConfig& pool,
                           const ContainerTemplate& t, const std::string& resolved_image_id,
                           const std::function<bool(const std::string&)>& ignored_env) {
  MatchResult result;
  result.pool = &pool;
  if (auto unknown = FindUnknown(config, "config")) {
    return Miss(result, "unknown_field", *unknown);
  }

  // The image: the template's ref, or the id it resolved to.
  const std::string pool_image =
      resolved_image_id.empty() || resolved_image_id == t.image
          ? Quote(t.image)
          : absl::StrCat(Quote(t.image), " (", Quote(resolved_image_id), ")");
  auto is_pool_image = [&](const std::string& image) {
    return image == t.image || (!resolved_image_id.empty() && image == resolved_image_id);
  };
  const v1::ImageSpec& image = config.image();
  if (!is_pool_image(image.image())) {
    return Miss(result, "image",
                DifferenceText({"config.image.image", Quote(image.image()), pool_image}));
  }
  if (!image.image_ref().empty() && !is_pool_image(image.image_ref())) {
    return Miss(result, "image",
                DifferenceText({"config.image.image_ref", Quote(image.image_ref()), pool_image}));
  }
  if (!image.runtime_handler().empty() && image.runtime_handler() != pool.sandbox.runtime_handler) {
    return Miss(result, "image",
                DifferenceText({"config.image.runtime_handler", Quote(image.runtime_handler()),
                                Quote(pool.sandbox.runtime_handler)}));
  }
  if (!image.annotations().empty()) {
    const auto first =
        std::min_element(image.annotations().begin(), image.annotations().end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
    return Miss(result, "image",
                DifferenceText({absl::StrCat("config.image.annotations[", Quote(first->first), "]"),
                                Quote(first->second), "none"}));
  }

  // Env: a set of key=value; the last value of a key wins, as in containerd.
  std::map<std::string, std::string> pod_env;
  for (const v1::KeyValue& kv : config.envs()) {
    if (t.env.count(kv.key()) == 0 && ignored_env && ignored_env(kv.key())) continue;
    pod_env[kv.key()] = kv.value();
  }
  {
    auto ia = pod_env.begin();
    auto ib = t.env.begin();
    while (ia != pod_env.end() || ib != t.env.end()) {
      if (ib == t.env.end() || (ia != pod_env.end() && ia->first < ib->first)) {
        return Miss(result, "env",
                    DifferenceText({absl::StrCat("config.envs[", Quote(ia->first), "]"),
                                    Quote(ia->second), "none"}));
      }
      if (ia == pod_env.end() || ib->first < ia->first) {
        return Miss(result, "env",
                    DifferenceText({absl::StrCat("config.envs[", Quote(ib->first), "]"), "none",
                                    Quote(ib->second)}));
      }
      if (ia->second != ib->second) {
        return Miss(result, "env",
                    DifferenceText({absl::StrCat("config.envs[", Quote(ia->first), "]"),
                                    Quote(ia->second), Quote(ib->second)}));
      }
      ++ia;
      ++ib;
    }
  }

  v1::ContainerConfig pod = config;
  v1::ContainerConfig expected =
      ContainerRequest(pool, t, "x", "x", t.image, v1::PodSandboxConfig()).config();
  ClearContainerFixable(&pod);
  ClearContainerFixable(&expected);
  if (auto diff = DiffMessages(pod, expected, "config")) {
    std::string reason = DifferenceText(*diff);
    const std::string code = ContainerReasonCode(diff->path);
    if (code == "security_context") {
      reason += ProfileHint(diff->path, "config.linux.security_context",
                            config.linux().security_context());
    }
    return Miss(result, code, std::move(reason));
  }
  result.hit = true;
  return result;
}

}  // namespace warmpool
