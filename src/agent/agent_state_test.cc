#include "agent/agent_state.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "common/files.h"

namespace ds {
namespace {

class AgentStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("ds_agent_state_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(AgentStateTest, MissingStateIsNotFound) {
  EXPECT_TRUE(absl::IsNotFound(LoadAgentState(dir_.string()).status()));
}

TEST_F(AgentStateTest, RoundTripsEncryptedWithMode0600) {
  AgentState s;
  s.server_url = "http://127.0.0.1:1";
  s.name = "pc-01";
  s.runner_id = 7;
  s.api_key = "dsk_secret_value";
  ASSERT_TRUE(SaveAgentState(dir_.string(), s).ok());
  struct stat st {};
  ASSERT_EQ(::stat(AgentStatePath(dir_.string()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  auto raw = ReadFileToString(AgentStatePath(dir_.string()));
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw->find("dsk_secret_value"), std::string::npos) << "key stored in the clear";
  auto back = LoadAgentState(dir_.string());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->api_key, "dsk_secret_value");
  EXPECT_EQ(back->runner_id, 7);
  EXPECT_TRUE(back->enrolled());
}

TEST_F(AgentStateTest, CorruptStateIsDataLossWithReEnrollHint) {
  AgentState s;
  s.api_key = "k";
  ASSERT_TRUE(SaveAgentState(dir_.string(), s).ok());
  std::string path = AgentStatePath(dir_.string());
  auto raw = *ReadFileToString(path);
  raw[raw.size() / 2] = raw[raw.size() / 2] == 'A' ? 'B' : 'A';
  ASSERT_TRUE(WriteFileAtomically(path, raw, 0600).ok());
  auto back = LoadAgentState(dir_.string());
  EXPECT_TRUE(absl::IsDataLoss(back.status())) << back.status();
  EXPECT_NE(back.status().message().find("--re-enroll"), std::string::npos);
  ASSERT_TRUE(MoveAgentStateAside(dir_.string()).ok());
  EXPECT_TRUE(absl::IsNotFound(LoadAgentState(dir_.string()).status()));
}

}  // namespace
}  // namespace ds
