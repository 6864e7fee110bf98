#include "daemon/pool_objects.h"

#include <mutex>

namespace warmpool {

void PoolObjects::AddSandbox(const std::string& id) {
  std::unique_lock lock(mu_);
  ids_.insert(id);
}

void PoolObjects::AddContainer(const std::string& id) {
  std::unique_lock lock(mu_);
  ids_.insert(id);
}

void PoolObjects::Remove(const std::string& id) {
  std::unique_lock lock(mu_);
  ids_.erase(id);
}

bool PoolObjects::Contains(const std::string& id) const {
  std::shared_lock lock(mu_);
  return ids_.count(id) != 0;
}

void PoolObjects::AddAdopted(AdoptedView view) {
  std::unique_lock lock(mu_);
  ids_.erase(view.sandbox_id);
  const std::string id = view.sandbox_id;
  adopted_[id] = std::make_shared<const AdoptedView>(std::move(view));
}

void PoolObjects::RemoveAdopted(const std::string& sandbox_id) {
  std::unique_lock lock(mu_);
  adopted_.erase(sandbox_id);
}

std::shared_ptr<const AdoptedView> PoolObjects::Adopted(const std::string& sandbox_id) const {
  std::shared_lock lock(mu_);
  auto it = adopted_.find(sandbox_id);
  return it == adopted_.end() ? nullptr : it->second;
}

bool PoolObjects::AnyAdopted() const {
  std::shared_lock lock(mu_);
  return !adopted_.empty();
}

int PoolObjects::AdoptedCount(const std::string& pool) const {
  std::shared_lock lock(mu_);
  int n = 0;
  for (const auto& [id, view] : adopted_) n += view->pool == pool;
  return n;
}

void PoolObjects::AddAdoptedContainer(AdoptedContainerView view) {
  std::unique_lock lock(mu_);
  ids_.erase(view.container_id);
  const std::string id = view.container_id;
  adopted_containers_[id] = std::make_shared<const AdoptedContainerView>(std::move(view));
}

void PoolObjects::RemoveAdoptedContainer(const std::string& container_id) {
  std::unique_lock lock(mu_);
  adopted_containers_.erase(container_id);
}

std::shared_ptr<const AdoptedContainerView> PoolObjects::AdoptedContainer(
    const std::string& id) const {
  std::shared_lock lock(mu_);
  auto it = adopted_containers_.find(id);
  return it == adopted_containers_.end() ? nullptr : it->second;
}

bool PoolObjects::AnyAdoptedContainer() const {
  std::shared_lock lock(mu_);
  return !adopted_containers_.empty();
}

void PoolObjects::SetPoolsConfigured(bool configured) {
  std::unique_lock lock(mu_);
  pools_configured_ = configured;
}

bool PoolObjects::Active() const {
  std::shared_lock lock(mu_);
  return pools_configured_ || !ids_.empty() || !adopted_.empty();
}

void PoolObjects::SetPinnedImages(std::set<std::string> image_ids) {
  std::unique_lock lock(mu_);
  pinned_ = std::move(image_ids);
}

bool PoolObjects::IsPinned(const std::string& image_id) const {
  std::shared_lock lock(mu_);
  return pinned_.count(image_id) != 0;
}

}  // namespace warmpool

#include "daemon/pool_types.h"

namespace warmpool {

const char* EntryStateName(EntryState state) {
  switch (state) {
    case EntryState::kCreating:
      return "creating";
    case EntryState::kWarming:
      return "warming";
    case EntryState::kFrozen:
      return "frozen";
    case EntryState::kAdopted:
      return "adopted";
    case EntryState::kDestroying:
      return "destroying";
  }
  return "unknown";
}

}  // namespace warmpool
