// The webhook address policy (docs/security.md, "Webhook targets"): every range, the IPv6 forms
// that carry an IPv4 address, numeric and resolved hosts, and the HTTP client's check of every
// address it connects to.
#include "http/address_policy.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

#include "http/http_client.h"
#include "http/http_server.h"
#include "http/http_types.h"

namespace ds::http {
namespace {

AddressKind KindOf(const std::string& numeric) {
  auto kind = ClassifyAddress(numeric);
  EXPECT_TRUE(kind.ok()) << numeric << ": " << kind.status();
  return kind.ok() ? *kind : AddressKind::kPublic;
}

struct Case {
  const char* address;
  AddressKind kind;
};

void ExpectKinds(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    EXPECT_EQ(KindOf(c.address), c.kind) << c.address;
  }
}

TEST(AddressPolicyTest, ClassifiesEveryRangeAtItsEdges) {
  const std::vector<Case> cases = {
      {"8.8.8.8", AddressKind::kPublic},
      {"2606:4700::1111", AddressKind::kPublic},
      {"127.0.0.1", AddressKind::kLoopback},
      {"127.255.255.254", AddressKind::kLoopback},
      {"::1", AddressKind::kLoopback},
      {"0.0.0.0", AddressKind::kUnspecified},
      {"0.1.2.3", AddressKind::kUnspecified},
      {"::", AddressKind::kUnspecified},
      {"169.254.0.1", AddressKind::kLinkLocal},
      {"169.254.255.255", AddressKind::kLinkLocal},
      {"fe80::1", AddressKind::kLinkLocal},
      {"febf::1", AddressKind::kLinkLocal},
      {"169.254.169.254", AddressKind::kMetadata},
      {"169.254.170.2", AddressKind::kMetadata},
      {"fd00:ec2::254", AddressKind::kMetadata},
      {"100.100.100.200", AddressKind::kMetadata},
      {"10.0.0.1", AddressKind::kPrivate},
      {"10.255.255.255", AddressKind::kPrivate},
      {"172.16.0.1", AddressKind::kPrivate},
      {"172.31.255.255", AddressKind::kPrivate},
      {"172.15.255.255", AddressKind::kPublic},
      {"172.32.0.0", AddressKind::kPublic},
      {"192.168.1.1", AddressKind::kPrivate},
      {"192.169.0.1", AddressKind::kPublic},
      {"100.64.0.1", AddressKind::kPrivate},
      {"100.127.255.255", AddressKind::kPrivate},
      {"100.128.0.0", AddressKind::kPublic},
      {"100.63.255.255", AddressKind::kPublic},
      {"fc00::1", AddressKind::kPrivate},
      {"fdff:ffff::1", AddressKind::kPrivate},
      {"fec0::1", AddressKind::kPrivate},
      {"224.0.0.1", AddressKind::kMulticast},
      {"239.255.255.250", AddressKind::kMulticast},
      {"ff02::1", AddressKind::kMulticast},
      {"240.0.0.1", AddressKind::kReserved},
      {"255.255.255.255", AddressKind::kReserved},
  };
  ExpectKinds(cases);
}

TEST(AddressPolicyTest, Ipv6FormsCarryingAnIpv4AddressAreThatAddressesKind) {
  const std::vector<Case> cases = {
      {"::ffff:127.0.0.1", AddressKind::kLoopback},
      {"::ffff:7f00:1", AddressKind::kLoopback},
      {"::ffff:169.254.169.254", AddressKind::kMetadata},
      {"::ffff:169.254.1.1", AddressKind::kLinkLocal},
      {"::ffff:0.0.0.0", AddressKind::kUnspecified},
      {"::ffff:10.1.2.3", AddressKind::kPrivate},
      {"::ffff:100.64.0.1", AddressKind::kPrivate},
      {"::ffff:224.0.0.1", AddressKind::kMulticast},
      {"::ffff:255.255.255.255", AddressKind::kReserved},
      {"::ffff:8.8.8.8", AddressKind::kPublic},
      {"::127.0.0.1", AddressKind::kLoopback},
      {"::10.0.0.1", AddressKind::kPrivate},
      {"64:ff9b::127.0.0.1", AddressKind::kLoopback},
      {"64:ff9b::a9fe:a9fe", AddressKind::kMetadata},
      {"64:ff9b::8.8.8.8", AddressKind::kPublic},
  };
  ExpectKinds(cases);
  EXPECT_TRUE(absl::IsInvalidArgument(ClassifyAddress("localhost").status()));
}

TEST(AddressPolicyTest, OnlyPrivateAndLoopbackCanBeAllowed) {
  AddressPolicy strict;
  AddressPolicy open{/*allow_private=*/true, /*allow_loopback=*/true};
  for (AddressKind kind :
       {AddressKind::kLinkLocal, AddressKind::kMetadata, AddressKind::kUnspecified,
        AddressKind::kMulticast, AddressKind::kReserved}) {
    EXPECT_FALSE(strict.Allows(kind)) << AddressKindName(kind);
    EXPECT_FALSE(open.Allows(kind)) << AddressKindName(kind);
  }
  EXPECT_TRUE(strict.Allows(AddressKind::kPublic));
  EXPECT_FALSE(strict.Allows(AddressKind::kPrivate));
  EXPECT_FALSE(strict.Allows(AddressKind::kLoopback));
  EXPECT_TRUE((AddressPolicy{true, false}.Allows(AddressKind::kPrivate)));
  EXPECT_FALSE((AddressPolicy{true, false}.Allows(AddressKind::kLoopback)));
  EXPECT_TRUE((AddressPolicy{false, true}.Allows(AddressKind::kLoopback)));
  EXPECT_FALSE((AddressPolicy{false, true}.Allows(AddressKind::kPrivate)));
}

TEST(AddressPolicyTest, CheckHostChecksNumericHostsAndEveryResolvedAddress) {
  AddressPolicy strict;
  for (const char* host : {"127.0.0.1", "[::1]", "::1", "[::ffff:127.0.0.1]", "0.0.0.0",
                           "169.254.169.254", "10.1.2.3", "[fe80::1]", "localhost"}) {
    absl::Status st = strict.CheckHost(host);
    EXPECT_TRUE(absl::IsPermissionDenied(st)) << host << ": " << st;
  }
  // The loose spellings a resolver accepts for 127.0.0.1 are the address they mean.
  for (const char* host : {"127.1", "2130706433", "0x7f000001", "0177.0.0.1"}) {
    absl::Status st = strict.CheckHost(host);
    EXPECT_TRUE(absl::IsPermissionDenied(st)) << host << ": " << st;
    EXPECT_NE(st.message().find("127.0.0.1 is a loopback address"), std::string::npos) << st;
  }
  EXPECT_TRUE(strict.CheckHost("8.8.8.8").ok());
  EXPECT_TRUE(strict.CheckHost("[2606:4700::1111]").ok());
  AddressPolicy loopback{false, true};
  EXPECT_TRUE(loopback.CheckHost("localhost").ok());  // every address of it is loopback
  EXPECT_TRUE(absl::IsPermissionDenied(loopback.CheckHost("10.0.0.1")));
  EXPECT_TRUE(absl::IsInvalidArgument(strict.CheckHost("no-such-host.invalid")));
}

// The client's own check, with no configuration check in front of it: what stops a name that
// resolved elsewhere when the target was configured (DNS rebinding).
TEST(AddressPolicyTest, ClientRefusesToConnectToARefusedAddress) {
  std::atomic<int> calls{0};
  auto s = StartServer(ServerOptions{}, [&](Request req, Responder respond) {
    calls.fetch_add(1);
    if (req.path == "/moved") {
      Response r = JsonResponse(302, "{}");
      r.headers.emplace_back("Location", "/landed");
      return respond(r);
    }
    respond(JsonResponse(200, "{}"));
  });
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string port = std::to_string((*s)->port());
  for (const std::string& base : {"http://127.0.0.1:" + port, "http://localhost:" + port}) {
    ClientOptions strict;
    strict.address_policy = AddressPolicy{};
    auto r = Client(base, strict).Do("POST", "/hook", "{}");
    EXPECT_TRUE(absl::IsPermissionDenied(r.status())) << base << ": " << r.status();
    EXPECT_NE(r.status().message().find("loopback"), std::string::npos) << r.status();
  }
  EXPECT_EQ(calls.load(), 0);  // refused before connecting
  ClientOptions loopback;
  loopback.address_policy = AddressPolicy{false, true};
  auto ok = Client("http://localhost:" + port, loopback).Do("POST", "/hook", "{}");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->status, 200);
  // A redirect is the answer, not followed.
  auto moved = Client("http://127.0.0.1:" + port, loopback).Do("POST", "/moved", "{}");
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->status, 302);
  EXPECT_EQ(calls.load(), 2);
  (*s)->Stop();
}

}  // namespace
}  // namespace ds::http
