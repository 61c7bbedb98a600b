#include "agent/agent_state.h"

#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/files.h"
#include "common/json.h"
#include "platform/directory.h"
#include "platform/system.h"

namespace ds {
namespace {

constexpr char kAssociatedData[] = "datasync-agent-state-v1";

// The key of the state from the machine's secret (platform::MachineSecret: /etc/machine-id
// (systemd), else D-Bus's copy, else the host name — weak) and the file's salt.
std::string DeriveKey(const std::string& salt) {
  return HkdfSha256(platform::MachineSecret(), salt, kAssociatedData, 32);
}

absl::Status Corrupt(const std::string& path, const std::string& why) {
  return absl::DataLossError(absl::StrCat(
      "agent state ", path, " cannot be read (", why,
      "): it is corrupt or was copied from another machine. Start the agent with --re-enroll to "
      "move it aside and enroll again (an operator must approve or replace the runner)"));
}

}  // namespace

std::string AgentStatePath(const std::string& state_dir) {
  return (std::filesystem::path(state_dir) / "agent.state").string();
}

absl::StatusOr<AgentState> LoadAgentState(const std::string& state_dir) {
  std::string path = AgentStatePath(state_dir);
  auto raw = ReadFileToString(path, 1 << 20);
  if (!raw.ok()) return raw.status();
  try {
    auto outer = ParseJsonOr(*raw);
    if (outer.value("v", 0) != 1) return Corrupt(path, "unknown format version");
    auto salt = Base64Decode(outer.at("salt").get<std::string>());
    auto sealed = Base64Decode(outer.at("data").get<std::string>());
    if (!salt.ok() || !sealed.ok()) return Corrupt(path, "bad encoding");
    auto plain = OpenAesGcm(DeriveKey(*salt), *sealed, kAssociatedData);
    if (!plain.ok()) return Corrupt(path, "decryption failed");
    auto j = ParseJsonOr(*plain);
    AgentState s;
    s.server_url = j.value("server_url", "");
    s.name = j.value("name", "");
    s.enrollment_id = j.value("enrollment_id", "");
    s.enrollment_secret = j.value("enrollment_secret", "");
    s.runner_id = j.value("runner_id", int64_t{0});
    s.api_key = j.value("api_key", "");
    return s;
  } catch (const nlohmann::json::exception& e) {
    return Corrupt(path, "not valid JSON");
  }
}

absl::Status SaveAgentState(const std::string& state_dir, const AgentState& s) {
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create state dir ", state_dir, ": ", ec.message()));
  nlohmann::json j{{"server_url", s.server_url}, {"name", s.name},
                   {"enrollment_id", s.enrollment_id}, {"enrollment_secret", s.enrollment_secret},
                   {"runner_id", s.runner_id}, {"api_key", s.api_key}};
  std::string salt = RandomBytes(16);
  DS_ASSIGN_OR_RETURN(std::string sealed, SealAesGcm(DeriveKey(salt), j.dump(), kAssociatedData));
  nlohmann::json outer{{"v", 1}, {"salt", Base64Encode(salt)}, {"data", Base64Encode(sealed)}};
  return WriteFileAtomically(AgentStatePath(state_dir), outer.dump() + "\n", 0600);
}

absl::Status MoveAgentStateAside(const std::string& state_dir) {
  const std::string name = std::filesystem::path(AgentStatePath(state_dir)).filename().string();
  const std::string aside = absl::StrCat(name, ".bad-", std::time(nullptr));
  absl::StatusOr<platform::Directory> dir = platform::Directory::Open(state_dir);
  if (!dir.ok()) return absl::IsNotFound(dir.status()) ? absl::OkStatus() : dir.status();
  absl::Status moved = dir->RenameAt(name, *dir, aside, platform::Replace::kYes);
  return absl::IsNotFound(moved) ? absl::OkStatus() : moved;
}

}  // namespace ds
