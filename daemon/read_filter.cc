#include "daemon/read_filter.h"

#include <functional>
#include <memory>
#include <optional>

#include "cri_runtime_v1.pb.h"

namespace warmpool {
namespace {

namespace v1 = ::runtime::v1;
using cri::ParseMessage;
using cri::SerializeMessage;

constexpr const char* kRuntime = "/runtime.v1.RuntimeService/";
constexpr const char* kImage = "/runtime.v1.ImageService/";

bool Managed(const google::protobuf::Map<std::string, std::string>& labels) {
  return labels.count(kLabelManaged) != 0;
}

// A call naming a pool object by id: answered as containerd answers for an
// id it does not know (its exact message, per method), never forwarded.
class IdGuard final : public cri::CallRewriter {
 public:
  using Getter = std::function<std::string(const google::protobuf::Message&)>;
  IdGuard(const PoolObjects* objects, std::unique_ptr<google::protobuf::Message> prototype,
          Getter id_of, std::function<grpc::Status(const std::string&)> answer)
      : objects_(objects),
        request_(std::move(prototype)),
        id_of_(std::move(id_of)),
        answer_(std::move(answer)) {}

  // Decided, not refused in OnRequest: some answers are OK (the removals are
  // idempotent), and an OK from OnRequest would mean "forward".
  void Decide(const grpc::ByteBuffer& message, DecideCallback done) override {
    if (grpc::Status s = ParseMessage(message, request_.get()); !s.ok()) {
      return done(LocalAnswer{s, {}});
    }
    const std::string id = id_of_(*request_);
    if (id.empty() || !objects_->Contains(id)) return done(std::nullopt);
    done(LocalAnswer{answer_(id), grpc::ByteBuffer()});  // empty bytes: an empty response
  }

 private:
  const PoolObjects* objects_;
  std::unique_ptr<google::protobuf::Message> request_;
  Getter id_of_;
  std::function<grpc::Status(const std::string&)> answer_;
};

// Edits each response message of type Resp with `edit` (returns whether it
// changed anything: an unchanged message keeps its original bytes).
template <typename Resp>
class ResponseEditor final : public cri::CallRewriter {
 public:
  using Edit = std::function<bool(Resp*, const PoolObjects*)>;
  ResponseEditor(const PoolObjects* objects, Edit edit) : objects_(objects), edit_(edit) {}

  grpc::Status OnResponse(grpc::ByteBuffer* message, bool* drop) override {
    Resp resp;
    if (grpc::Status s = ParseMessage(*message, &resp); !s.ok()) return s;
    if (!edit_(&resp, objects_)) return grpc::Status::OK;
    return SerializeMessage(resp, message);
  }

 private:
  const PoolObjects* objects_;
  Edit edit_;
};

// Removes the elements of a repeated field for which `hide` is true.
template <typename T, typename Pred>
bool RemoveIf(google::protobuf::RepeatedPtrField<T>* items, Pred hide) {
  const int before = items->size();
  auto keep = std::remove_if(items->begin(), items->end(), hide);
  items->erase(keep, items->end());
  return items->size() != before;
}

template <typename Resp>
std::unique_ptr<cri::CallRewriter> Editor(const PoolObjects* objects,
                                          typename ResponseEditor<Resp>::Edit edit) {
  return std::make_unique<ResponseEditor<Resp>>(objects, std::move(edit));
}

template <typename Req>
std::unique_ptr<cri::CallRewriter> Guard(const PoolObjects* objects,
                                         std::string (*id_of)(const Req&),
                                         grpc::Status (*answer)(const std::string&)) {
  return std::make_unique<IdGuard>(
      objects, std::make_unique<Req>(),
      [id_of](const google::protobuf::Message& m) { return id_of(static_cast<const Req&>(m)); },
      answer);
}

grpc::Status NotFound(const std::string& message) {
  return grpc::Status(grpc::StatusCode::NOT_FOUND, message);
}

// The answers below are containerd 1.6's own for unknown ids, method by
// method (checked against it by the integration tests).
grpc::Status Ok(const std::string&) { return grpc::Status::OK; }  // idempotent removals
grpc::Status SandboxFind(const std::string&) {
  return NotFound("an error occurred when try to find sandbox: not found");
}
grpc::Status SandboxFindQuoted(const std::string& id) {
  return NotFound("an error occurred when try to find sandbox \"" + id + "\": not found");
}
grpc::Status SandboxStatsFind(const std::string& id) {
  return NotFound("an error occurred when trying to find sandbox " + id + ": not found");
}
grpc::Status SandboxFailedFind(const std::string& id) {
  return NotFound("failed to find sandbox \"" + id + "\": not found");
}
grpc::Status SandboxIdFind(const std::string& id) {
  return NotFound("failed to find sandbox id \"" + id + "\": not found");
}
grpc::Status ContainerFindQuoted(const std::string& id) {
  return NotFound("an error occurred when try to find container \"" + id + "\": not found");
}
grpc::Status ContainerFailedFind(const std::string&) {
  return NotFound("failed to find container: not found");
}
grpc::Status ContainerExecFind(const std::string& id) {
  return NotFound("failed to exec in container: failed to find container \"" + id +
                  "\" in store: not found");
}
grpc::Status ContainerStoreFind(const std::string& id) {
  return NotFound("failed to find container \"" + id + "\" in store: not found");
}
grpc::Status ContainerStoreFindUnquoted(const std::string&) {
  return NotFound("failed to find container in store: not found");
}

template <typename Req>
std::string SandboxIdOf(const Req& r) {
  return r.pod_sandbox_id();
}
template <typename Req>
std::string ContainerIdOf(const Req& r) {
  return r.container_id();
}

// --- per-method factories ----------------------------------------------

// --- adopted sandboxes: shown as kubelet made them -------------------------

bool HideSandbox(const std::string& id,
                 const google::protobuf::Map<std::string, std::string>& labels,
                 const PoolObjects* objects) {
  return (Managed(labels) || objects->Contains(id)) && objects->Adopted(id) == nullptr;
}

void Rewrite(const AdoptedView& view, v1::PodSandboxMetadata* metadata,
             google::protobuf::Map<std::string, std::string>* labels,
             google::protobuf::Map<std::string, std::string>* annotations) {
  *metadata = view.config.metadata();
  *labels = view.config.labels();
  *annotations = view.config.annotations();
}

bool Selected(const google::protobuf::Map<std::string, std::string>& labels,
              const google::protobuf::Map<std::string, std::string>& selector) {
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

// ListPodSandbox and StreamPodSandboxes: pool entries hidden, adopted ones
// rewritten; a label selector is applied here, to the rewritten labels
// (upstream only knows warmpool's labels on adopted sandboxes).
template <typename Req, typename Resp>
class SandboxListRewriter final : public cri::CallRewriter {
 public:
  using Items = google::protobuf::RepeatedPtrField<v1::PodSandbox>* (*)(Resp*);
  SandboxListRewriter(const PoolObjects* objects, Items items) : objects_(objects), items_(items) {}

  grpc::Status OnRequest(grpc::ByteBuffer* message) override {
    if (!objects_->AnyAdopted()) return grpc::Status::OK;
    Req req;
    if (grpc::Status s = ParseMessage(*message, &req); !s.ok()) return s;
    if (req.filter().label_selector().empty()) return grpc::Status::OK;
    selector_ = req.filter().label_selector();
    req.mutable_filter()->clear_label_selector();
    return SerializeMessage(req, message);
  }

  grpc::Status OnResponse(grpc::ByteBuffer* message, bool* drop) override {
    Resp resp;
    if (grpc::Status s = ParseMessage(*message, &resp); !s.ok()) return s;
    bool changed = RemoveIf(items_(&resp), [&](const v1::PodSandbox& sb) {
      return HideSandbox(sb.id(), sb.labels(), objects_);
    });
    for (v1::PodSandbox& sb : *items_(&resp)) {
      if (auto view = objects_->Adopted(sb.id())) {
        Rewrite(*view, sb.mutable_metadata(), sb.mutable_labels(), sb.mutable_annotations());
        sb.set_created_at(view->created_at_ns);
        sb.set_runtime_handler(view->runtime_handler);
        changed = true;
      }
    }
    if (!selector_.empty()) {
      changed |= RemoveIf(items_(&resp), [&](const v1::PodSandbox& sb) {
        return !Selected(sb.labels(), selector_);
      });
    }
    if (!changed) return grpc::Status::OK;
    return SerializeMessage(resp, message);
  }

 private:
  const PoolObjects* objects_;
  Items items_;
  google::protobuf::Map<std::string, std::string> selector_;
};

std::unique_ptr<cri::CallRewriter> ListPodSandbox(const PoolObjects* o) {
  return std::make_unique<
      SandboxListRewriter<v1::ListPodSandboxRequest, v1::ListPodSandboxResponse>>(
      o, [](v1::ListPodSandboxResponse* r) { return r->mutable_items(); });
}
std::unique_ptr<cri::CallRewriter> StreamPodSandboxes(const PoolObjects* o) {
  return std::make_unique<
      SandboxListRewriter<v1::StreamPodSandboxesRequest, v1::StreamPodSandboxesResponse>>(
      o, [](v1::StreamPodSandboxesResponse* r) { return r->mutable_pod_sandboxes(); });
}

void RewriteStatus(const AdoptedView& view, v1::PodSandboxStatus* st) {
  Rewrite(view, st->mutable_metadata(), st->mutable_labels(), st->mutable_annotations());
  st->set_created_at(view.created_at_ns);
  st->set_runtime_handler(view.runtime_handler);
  // Late network: the pod's IPs, not the placeholder's. A sandbox whose
  // netns containerd closed (stopped) reports none, as a cold one does.
  if (view.late_network && st->has_network() && !st->network().ip().empty()) {
    v1::PodSandboxNetworkStatus* net = st->mutable_network();
    net->clear_additional_ips();
    net->clear_ip();
    for (size_t i = 0; i < view.pod_ips.size(); ++i) {
      if (i == 0) {
        net->set_ip(view.pod_ips[0]);
      } else {
        net->add_additional_ips()->set_ip(view.pod_ips[i]);
      }
    }
  }
}

// Adopted pre-started containers carry warmpool's labels upstream but are
// kubelet's: shown, as kubelet made them. Every other pool container hides.
bool HideContainer(const v1::Container& c, const PoolObjects* objects) {
  if (objects->AdoptedContainer(c.id()) != nullptr) return false;
  return Managed(c.labels()) || objects->Contains(c.id()) || objects->Contains(c.pod_sandbox_id());
}

void RewriteContainer(const AdoptedContainerView& v, v1::Container* c) {
  *c->mutable_metadata() = v.config.metadata();
  *c->mutable_labels() = v.config.labels();
  *c->mutable_annotations() = v.config.annotations();
  *c->mutable_image() = v.config.image();
  c->set_created_at(v.created_at_ns);
  if (v.started_at_ns == 0 && c->state() == v1::CONTAINER_RUNNING) {
    c->set_state(v1::CONTAINER_CREATED);
  }
}

void RewriteContainerStatus(const AdoptedContainerView& v, v1::ContainerStatus* st) {
  *st->mutable_metadata() = v.config.metadata();
  *st->mutable_labels() = v.config.labels();
  *st->mutable_annotations() = v.config.annotations();
  st->set_created_at(v.created_at_ns);
  if (v.started_at_ns == 0) {
    if (st->state() == v1::CONTAINER_RUNNING) st->set_state(v1::CONTAINER_CREATED);
    st->set_started_at(0);
  } else {
    st->set_started_at(v.started_at_ns);
  }
  *st->mutable_mounts() = v.config.mounts();
  st->set_log_path(v.log_path);
  // containerd reports the resources of its spec, the pool template's.
  if (v.config.linux().has_resources()) {
    *st->mutable_resources()->mutable_linux() = v.config.linux().resources();
  } else {
    st->clear_resources();
  }
}

// Statuses of an adopted sandbox's containers (events, sandbox status):
// unclaimed pre-started ones hidden, adopted ones rewritten.
bool RewriteContainerStatuses(google::protobuf::RepeatedPtrField<v1::ContainerStatus>* statuses,
                              const PoolObjects* objects) {
  bool changed = RemoveIf(statuses, [&](const v1::ContainerStatus& st) {
    return objects->AdoptedContainer(st.id()) == nullptr &&
           (Managed(st.labels()) || objects->Contains(st.id()));
  });
  for (auto& st : *statuses) {
    if (auto view = objects->AdoptedContainer(st.id())) {
      RewriteContainerStatus(*view, &st);
      changed = true;
    }
  }
  return changed;
}

bool StateSelected(const v1::ContainerFilter& f, const v1::Container& c) {
  return !f.has_state() || f.state().state() == c.state();
}

// ListContainers and StreamContainers: pool containers hidden, adopted ones
// rewritten. With adopted containers around, the state and label filters
// apply here, to the rewritten containers (upstream knows neither kubelet's
// labels nor that a frozen adopted container is only "created").
template <typename Req, typename Resp>
class ContainerListRewriter final : public cri::CallRewriter {
 public:
  using Items = google::protobuf::RepeatedPtrField<v1::Container>* (*)(Resp*);
  ContainerListRewriter(const PoolObjects* objects, Items items)
      : objects_(objects), items_(items) {}

  grpc::Status OnRequest(grpc::ByteBuffer* message) override {
    if (!objects_->AnyAdoptedContainer()) return grpc::Status::OK;
    Req req;
    if (grpc::Status s = ParseMessage(*message, &req); !s.ok()) return s;
    if (!req.has_filter() ||
        (req.filter().label_selector().empty() && !req.filter().has_state())) {
      return grpc::Status::OK;
    }
    local_ = v1::ContainerFilter();
    *local_->mutable_label_selector() = req.filter().label_selector();
    if (req.filter().has_state()) *local_->mutable_state() = req.filter().state();
    req.mutable_filter()->clear_label_selector();
    req.mutable_filter()->clear_state();
    return SerializeMessage(req, message);
  }

  grpc::Status OnResponse(grpc::ByteBuffer* message, bool* drop) override {
    Resp resp;
    if (grpc::Status s = ParseMessage(*message, &resp); !s.ok()) return s;
    bool changed = RemoveIf(items_(&resp),
                            [&](const v1::Container& c) { return HideContainer(c, objects_); });
    for (v1::Container& c : *items_(&resp)) {
      if (auto view = objects_->AdoptedContainer(c.id())) {
        RewriteContainer(*view, &c);
        changed = true;
      }
    }
    if (local_) {
      changed |= RemoveIf(items_(&resp), [&](const v1::Container& c) {
        return !Selected(c.labels(), local_->label_selector()) || !StateSelected(*local_, c);
      });
    }
    if (!changed) return grpc::Status::OK;
    return SerializeMessage(resp, message);
  }

 private:
  const PoolObjects* objects_;
  Items items_;
  std::optional<v1::ContainerFilter> local_;
};

std::unique_ptr<cri::CallRewriter> ListContainers(const PoolObjects* o) {
  return std::make_unique<
      ContainerListRewriter<v1::ListContainersRequest, v1::ListContainersResponse>>(
      o, [](v1::ListContainersResponse* r) { return r->mutable_containers(); });
}
std::unique_ptr<cri::CallRewriter> StreamContainers(const PoolObjects* o) {
  return std::make_unique<
      ContainerListRewriter<v1::StreamContainersRequest, v1::StreamContainersResponse>>(
      o, [](v1::StreamContainersResponse* r) { return r->mutable_containers(); });
}
bool HideContainerStats(const v1::ContainerStats& s, const PoolObjects* objects) {
  if (objects->AdoptedContainer(s.attributes().id()) != nullptr) return false;
  return Managed(s.attributes().labels()) || objects->Contains(s.attributes().id());
}
// Adopted containers' stats come from the cgroup their processes are in.
bool RewriteContainerStats(google::protobuf::RepeatedPtrField<v1::ContainerStats>* stats,
                           const PoolObjects* objects) {
  bool changed =
      RemoveIf(stats, [&](const v1::ContainerStats& s) { return HideContainerStats(s, objects); });
  for (auto& s : *stats) {
    if (auto view = objects->AdoptedContainer(s.attributes().id())) {
      objects->AdoptedStats(*view, &s);
      changed = true;
    }
  }
  return changed;
}
std::unique_ptr<cri::CallRewriter> ListContainerStats(const PoolObjects* o) {
  return Editor<v1::ListContainerStatsResponse>(
      o, [](auto* r, auto* objects) { return RewriteContainerStats(r->mutable_stats(), objects); });
}
std::unique_ptr<cri::CallRewriter> StreamContainerStats(const PoolObjects* o) {
  return Editor<v1::StreamContainerStatsResponse>(o, [](auto* r, auto* objects) {
    return RewriteContainerStats(r->mutable_container_stats(), objects);
  });
}
bool HideSandboxStats(const v1::PodSandboxStats& s, const PoolObjects* objects) {
  return HideSandbox(s.attributes().id(), s.attributes().labels(), objects);
}
bool RewriteSandboxStats(google::protobuf::RepeatedPtrField<v1::PodSandboxStats>* stats,
                         const PoolObjects* objects) {
  bool changed =
      RemoveIf(stats, [&](const v1::PodSandboxStats& s) { return HideSandboxStats(s, objects); });
  for (auto& s : *stats) {
    if (auto view = objects->Adopted(s.attributes().id())) {
      auto* a = s.mutable_attributes();
      Rewrite(*view, a->mutable_metadata(), a->mutable_labels(), a->mutable_annotations());
      changed = true;
    }
  }
  return changed;
}
std::unique_ptr<cri::CallRewriter> ListPodSandboxStats(const PoolObjects* o) {
  return Editor<v1::ListPodSandboxStatsResponse>(
      o, [](auto* r, auto* objects) { return RewriteSandboxStats(r->mutable_stats(), objects); });
}
std::unique_ptr<cri::CallRewriter> StreamPodSandboxStats(const PoolObjects* o) {
  return Editor<v1::StreamPodSandboxStatsResponse>(o, [](auto* r, auto* objects) {
    return RewriteSandboxStats(r->mutable_pod_sandbox_stats(), objects);
  });
}
std::unique_ptr<cri::CallRewriter> ListPodSandboxMetrics(const PoolObjects* o) {
  return Editor<v1::ListPodSandboxMetricsResponse>(o, [](auto* r, auto* objects) {
    return RemoveIf(r->mutable_pod_metrics(), [&](const v1::PodSandboxMetrics& m) {
      return objects->Contains(m.pod_sandbox_id());
    });
  });
}
std::unique_ptr<cri::CallRewriter> StreamPodSandboxMetrics(const PoolObjects* o) {
  return Editor<v1::StreamPodSandboxMetricsResponse>(o, [](auto* r, auto* objects) {
    return RemoveIf(r->mutable_pod_sandbox_metrics(), [&](const v1::PodSandboxMetrics& m) {
      return objects->Contains(m.pod_sandbox_id());
    });
  });
}

// Events of pool containers are dropped whole (a stream message is one event).
class EventFilter final : public cri::CallRewriter {
 public:
  explicit EventFilter(const PoolObjects* objects) : objects_(objects) {}
  grpc::Status OnResponse(grpc::ByteBuffer* message, bool* drop) override {
    v1::ContainerEventResponse event;
    if (grpc::Status s = ParseMessage(*message, &event); !s.ok()) return s;
    const std::string& sandbox_id = event.pod_sandbox_status().id();
    *drop = objects_->Contains(event.container_id()) ||
            HideSandbox(sandbox_id, event.pod_sandbox_status().labels(), objects_);
    if (*drop) return grpc::Status::OK;
    if (auto view = objects_->Adopted(sandbox_id)) {
      RewriteStatus(*view, event.mutable_pod_sandbox_status());
      RewriteContainerStatuses(event.mutable_containers_statuses(), objects_);
      return SerializeMessage(event, message);
    }
    return grpc::Status::OK;
  }

 private:
  const PoolObjects* objects_;
};
std::unique_ptr<cri::CallRewriter> GetContainerEvents(const PoolObjects* o) {
  return std::make_unique<EventFilter>(o);
}

// PodSandboxStatus: by id, and by the labels in the answer.
class SandboxStatusFilter final : public cri::CallRewriter {
 public:
  explicit SandboxStatusFilter(const PoolObjects* objects) : objects_(objects) {}
  grpc::Status OnRequest(grpc::ByteBuffer* message) override {
    v1::PodSandboxStatusRequest req;
    if (grpc::Status s = ParseMessage(*message, &req); !s.ok()) return s;
    if (objects_->Contains(req.pod_sandbox_id())) return SandboxFind(req.pod_sandbox_id());
    return grpc::Status::OK;
  }
  grpc::Status OnResponse(grpc::ByteBuffer* message, bool* drop) override {
    v1::PodSandboxStatusResponse resp;
    if (grpc::Status s = ParseMessage(*message, &resp); !s.ok()) return s;
    if (auto view = objects_->Adopted(resp.status().id())) {
      RewriteStatus(*view, resp.mutable_status());
      RewriteContainerStatuses(resp.mutable_containers_statuses(), objects_);
      return SerializeMessage(resp, message);
    }
    if (Managed(resp.status().labels())) return SandboxFind(resp.status().id());
    return grpc::Status::OK;
  }

 private:
  const PoolObjects* objects_;
};
std::unique_ptr<cri::CallRewriter> PodSandboxStatus(const PoolObjects* o) {
  return std::make_unique<SandboxStatusFilter>(o);
}

// ContainerStatus: by id, and by the labels in the answer.
class ContainerStatusFilter final : public cri::CallRewriter {
 public:
  explicit ContainerStatusFilter(const PoolObjects* objects) : objects_(objects) {}
  grpc::Status OnRequest(grpc::ByteBuffer* message) override {
    v1::ContainerStatusRequest req;
    if (grpc::Status s = ParseMessage(*message, &req); !s.ok()) return s;
    id_ = req.container_id();
    if (objects_->Contains(id_)) return ContainerFindQuoted(id_);
    return grpc::Status::OK;
  }
  grpc::Status OnResponse(grpc::ByteBuffer* message, bool* drop) override {
    v1::ContainerStatusResponse resp;
    if (grpc::Status s = ParseMessage(*message, &resp); !s.ok()) return s;
    if (auto view = objects_->AdoptedContainer(resp.status().id())) {
      RewriteContainerStatus(*view, resp.mutable_status());
      return SerializeMessage(resp, message);
    }
    if (Managed(resp.status().labels())) return ContainerFindQuoted(id_);
    return grpc::Status::OK;
  }

 private:
  const PoolObjects* objects_;
  std::string id_;
};
std::unique_ptr<cri::CallRewriter> ContainerStatus(const PoolObjects* o) {
  return std::make_unique<ContainerStatusFilter>(o);
}

bool PinImage(v1::Image* image, const PoolObjects* objects) {
  if (image->pinned() || !objects->IsPinned(image->id())) return false;
  image->set_pinned(true);
  return true;
}
std::unique_ptr<cri::CallRewriter> ImageStatus(const PoolObjects* o) {
  return Editor<v1::ImageStatusResponse>(o, [](auto* r, auto* objects) {
    return r->has_image() && PinImage(r->mutable_image(), objects);
  });
}
std::unique_ptr<cri::CallRewriter> ListImages(const PoolObjects* o) {
  return Editor<v1::ListImagesResponse>(o, [](auto* r, auto* objects) {
    bool changed = false;
    for (auto& image : *r->mutable_images()) changed |= PinImage(&image, objects);
    return changed;
  });
}
std::unique_ptr<cri::CallRewriter> StreamImages(const PoolObjects* o) {
  return Editor<v1::StreamImagesResponse>(o, [](auto* r, auto* objects) {
    bool changed = false;
    for (auto& image : *r->mutable_images()) changed |= PinImage(&image, objects);
    return changed;
  });
}

// The hand-off's rewriter and the filter's for one call: the filter decides
// first (a pool object's id is unknown to kubelet), then the hand-off.
class ChainedRewriter final : public cri::CallRewriter {
 public:
  ChainedRewriter(std::unique_ptr<cri::CallRewriter> handoff,
                  std::unique_ptr<cri::CallRewriter> filter)
      : handoff_(std::move(handoff)), filter_(std::move(filter)) {}
  grpc::Status OnRequest(grpc::ByteBuffer* message) override {
    if (grpc::Status s = filter_->OnRequest(message); !s.ok()) return s;
    return handoff_->OnRequest(message);
  }
  grpc::Status OnResponse(grpc::ByteBuffer* message, bool* drop) override {
    if (grpc::Status s = handoff_->OnResponse(message, drop); !s.ok() || *drop) return s;
    return filter_->OnResponse(message, drop);
  }
  void Decide(const grpc::ByteBuffer& request, DecideCallback done) override {
    auto copy = std::make_shared<grpc::ByteBuffer>(request);
    filter_->Decide(*copy, [this, copy, done = std::move(done)](std::optional<LocalAnswer> a) {
      if (a) return done(std::move(a));
      handoff_->Decide(*copy, done);
    });
  }

 private:
  std::unique_ptr<cri::CallRewriter> handoff_;
  std::unique_ptr<cri::CallRewriter> filter_;
};

}  // namespace

grpc::Status SandboxNotFound(const std::string& id) { return SandboxFind(id); }
grpc::Status ContainerNotFound(const std::string& id) { return ContainerFindQuoted(id); }
grpc::Status SandboxNotFoundQuoted(const std::string& id) { return SandboxFindQuoted(id); }

PoolReadFilter::PoolReadFilter(const PoolObjects* objects, cri::RewritePolicy* first)
    : objects_(objects), first_(first) {
  auto rt = [](const char* m) { return std::string(kRuntime) + m; };
  // Reads: answers edited.
  factories_[rt("ListPodSandbox")] = &ListPodSandbox;
  factories_[rt("StreamPodSandboxes")] = &StreamPodSandboxes;
  factories_[rt("PodSandboxStatus")] = &PodSandboxStatus;
  factories_[rt("ListContainers")] = &ListContainers;
  factories_[rt("StreamContainers")] = &StreamContainers;
  factories_[rt("ContainerStatus")] = &ContainerStatus;
  factories_[rt("ListContainerStats")] = &ListContainerStats;
  factories_[rt("StreamContainerStats")] = &StreamContainerStats;
  factories_[rt("ListPodSandboxStats")] = &ListPodSandboxStats;
  factories_[rt("StreamPodSandboxStats")] = &StreamPodSandboxStats;
  factories_[rt("ListPodSandboxMetrics")] = &ListPodSandboxMetrics;
  factories_[rt("StreamPodSandboxMetrics")] = &StreamPodSandboxMetrics;
  factories_[rt("GetContainerEvents")] = &GetContainerEvents;
  factories_[std::string(kImage) + "ImageStatus"] = &ImageStatus;
  factories_[std::string(kImage) + "ListImages"] = &ListImages;
  factories_[std::string(kImage) + "StreamImages"] = &StreamImages;
  // Calls by id: a pool object is an unknown id to kubelet.
  factories_[rt("StopPodSandbox")] = [](const PoolObjects* o) {
    return Guard<v1::StopPodSandboxRequest>(o, &SandboxIdOf, &SandboxFindQuoted);
  };
  factories_[rt("RemovePodSandbox")] = [](const PoolObjects* o) {
    return Guard<v1::RemovePodSandboxRequest>(o, &SandboxIdOf, &Ok);
  };
  factories_[rt("PodSandboxStats")] = [](const PoolObjects* o) {
    return Guard<v1::PodSandboxStatsRequest>(o, &SandboxIdOf, &SandboxStatsFind);
  };
  factories_[rt("PortForward")] = [](const PoolObjects* o) {
    return Guard<v1::PortForwardRequest>(o, &SandboxIdOf, &SandboxFailedFind);
  };
  factories_[rt("CreateContainer")] = [](const PoolObjects* o) {
    return Guard<v1::CreateContainerRequest>(o, &SandboxIdOf, &SandboxIdFind);
  };
  factories_[rt("UpdatePodSandboxResources")] = [](const PoolObjects* o) {
    return Guard<v1::UpdatePodSandboxResourcesRequest>(o, &SandboxIdOf, &SandboxFindQuoted);
  };
  factories_[rt("ContainerStats")] = [](const PoolObjects* o) {
    return Guard<v1::ContainerStatsRequest>(o, &ContainerIdOf, &ContainerFailedFind);
  };
  factories_[rt("StartContainer")] = [](const PoolObjects* o) {
    return Guard<v1::StartContainerRequest>(o, &ContainerIdOf, &ContainerFindQuoted);
  };
  factories_[rt("StopContainer")] = [](const PoolObjects* o) {
    return Guard<v1::StopContainerRequest>(o, &ContainerIdOf, &ContainerFindQuoted);
  };
  factories_[rt("RemoveContainer")] = [](const PoolObjects* o) {
    return Guard<v1::RemoveContainerRequest>(o, &ContainerIdOf, &Ok);
  };
  factories_[rt("ExecSync")] = [](const PoolObjects* o) {
    return Guard<v1::ExecSyncRequest>(o, &ContainerIdOf, &ContainerExecFind);
  };
  factories_[rt("Exec")] = [](const PoolObjects* o) {
    return Guard<v1::ExecRequest>(o, &ContainerIdOf, &ContainerStoreFind);
  };
  factories_[rt("Attach")] = [](const PoolObjects* o) {
    return Guard<v1::AttachRequest>(o, &ContainerIdOf, &ContainerStoreFindUnquoted);
  };
  factories_[rt("ReopenContainerLog")] = [](const PoolObjects* o) {
    return Guard<v1::ReopenContainerLogRequest>(o, &ContainerIdOf, &ContainerFindQuoted);
  };
  factories_[rt("UpdateContainerResources")] = [](const PoolObjects* o) {
    return Guard<v1::UpdateContainerResourcesRequest>(o, &ContainerIdOf, &ContainerFailedFind);
  };
  factories_[rt("CheckpointContainer")] = [](const PoolObjects* o) {
    return Guard<v1::CheckpointContainerRequest>(o, &ContainerIdOf, &ContainerFindQuoted);
  };
}

namespace {
class NotReady final : public cri::CallRewriter {
 public:
  grpc::Status OnRequest(grpc::ByteBuffer*) override {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "warmpoold is starting: recovering its hand-off records; retry");
  }
};
}  // namespace

std::unique_ptr<cri::CallRewriter> PoolReadFilter::ForMethod(const std::string& method) {
  if (!ready_) return std::make_unique<NotReady>();
  std::unique_ptr<cri::CallRewriter> first;
  if (first_ != nullptr) first = first_->ForMethod(method);
  // No pools and nothing of theirs left: reads pass as raw bytes.
  auto it = factories_.find(method);
  if (!objects_->Active() || it == factories_.end()) return first;
  std::unique_ptr<cri::CallRewriter> filter = it->second(objects_);
  if (first == nullptr) return filter;
  return std::make_unique<ChainedRewriter>(std::move(first), std::move(filter));
}

}  // namespace warmpool
