import Testing

@testable import MarqueeCore

@Suite struct IPAddressTests {
    @Test(arguments: [
        ("192.0.2.1", "192.0.2.1"),
        ("0.0.0.0", "0.0.0.0"),
        ("255.255.255.255", "255.255.255.255"),
        ("::1", "::1"),
        ("::", "::"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),  // the first of two equal runs is compressed
        ("2001:0db8:0000:0000:0000:ff00:0042:8329", "2001:db8::ff00:42:8329"),
        ("fe80::1%eth0", "fe80::1"),
        ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
        ("1:0:3:4:5:6:7:8", "1:0:3:4:5:6:7:8"),  // a single zero group is not compressed
        ("::ffff:192.0.2.1", "192.0.2.1"),  // IPv4-mapped: the IPv4 address
        ("::ffff:c000:201", "192.0.2.1"),
        ("64:ff9b::192.0.2.1", "64:ff9b::c000:201"),
    ])
    func parsesAndPrintsCanonically(text: String, canonical: String) throws {
        let address = try #require(IPAddress(text))
        #expect(address.description == canonical)
        #expect(IPAddress(canonical) == address)
    }

    @Test(arguments: [
        "", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4 ", " 1.2.3.4", "1.2.3.-4", "a.b.c.d", "1..2.3",
        ":", ":::", "1:::2", "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", ":1", "1:", "12345::", "g::", "::1.2.3",
        "1.2.3.4::", "%eth0", "::1%", "[::1]", "unknown", "localhost",
    ])
    func refuses(text: String) {
        #expect(IPAddress(text) == nil, "\(text)")
    }

    @Test func mappedAndPlainIPv4AreOneKey() {
        #expect(IPAddress("::ffff:10.1.2.3") == IPAddress("10.1.2.3"))
        #expect(Set([IPAddress("::ffff:10.1.2.3")!, IPAddress("10.1.2.3")!]).count == 1)
        #expect(IPAddress("::10.1.2.3") != IPAddress("10.1.2.3"))  // IPv4-compatible is not mapped
    }
}

@Suite struct CIDRTests {
    @Test func matchesItsBlockOnly() throws {
        let block = try CIDR(parsing: "10.0.0.0/8")
        #expect(block.contains(IPAddress("10.0.0.0")!))
        #expect(block.contains(IPAddress("10.255.255.255")!))
        #expect(block.contains(IPAddress("::ffff:10.1.2.3")!))
        #expect(!block.contains(IPAddress("11.0.0.0")!))
        #expect(!block.contains(IPAddress("9.255.255.255")!))
        #expect(!block.contains(IPAddress("::a00:1")!))  // an IPv6 address with the same low bits

        let v6 = try CIDR(parsing: "2001:db8::/32")
        #expect(v6.contains(IPAddress("2001:db8:ffff::1")!))
        #expect(!v6.contains(IPAddress("2001:db9::1")!))
        #expect(!v6.contains(IPAddress("10.0.0.1")!))

        let odd = try CIDR(parsing: "2001:db8:8000::/33")
        #expect(odd.contains(IPAddress("2001:db8:8000::1")!))
        #expect(!odd.contains(IPAddress("2001:db8:7fff::1")!))

        let wide = try CIDR(parsing: "fc00::/7")
        #expect(wide.contains(IPAddress("fd12::1")!))
        #expect(!wide.contains(IPAddress("fe00::1")!))

        let low = try CIDR(parsing: "::/127")
        #expect(low.contains(IPAddress("::1")!) && low.contains(IPAddress("::")!) && !low.contains(IPAddress("::2")!))
    }

    @Test func bareAddressesAndEdges() throws {
        let one = try CIDR(parsing: " 127.0.0.1 ")
        #expect(one.prefixLength == 32 && one.contains(IPAddress("127.0.0.1")!) && !one.contains(IPAddress("127.0.0.2")!))
        #expect(try CIDR(parsing: "::1").prefixLength == 128)
        let all = try CIDR(parsing: "0.0.0.0/0")
        #expect(all.contains(IPAddress("203.0.113.9")!) && !all.contains(IPAddress("::1")!))
        let allV6 = try CIDR(parsing: "::/0")
        #expect(allV6.contains(IPAddress("2001:db8::1")!) && !allV6.contains(IPAddress("1.2.3.4")!))
        let mapped = try CIDR(parsing: "::ffff:10.0.0.0/104")
        #expect(mapped == (try CIDR(parsing: "10.0.0.0/8")))
        #expect(try CIDR(parsing: "192.168.1.0/24").description == "192.168.1.0/24")
    }

    @Test(arguments: [
        "10.0.0.1/8", "10.0.0.0/33", "::/129", "10.0.0.0/", "/8", "10.0.0.0/8/8", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/ 8",
        "fe80::1%eth0/128", "garbage", "", "::ffff:10.0.0.0/8", "2001:db8::1/32",
    ])
    func refuses(text: String) {
        #expect(throws: CIDR.ParseError.self, "\(text)") { try CIDR(parsing: text) }
    }

    @Test func errorsSayWhatToWrite() {
        #expect {
            try CIDR(parsing: "10.0.0.1/8")
        } throws: { error in
            "\(error)".contains("10.0.0.0/8") && "\(error)".contains("10.0.0.1 alone")
        }
    }
}

@Suite struct TrustedProxiesTests {
    let proxies = try! TrustedProxies(parsing: "127.0.0.1/32, 10.0.0.0/8,,::1/128")
    let proxy = IPAddress("10.0.0.5")!
    let stranger = IPAddress("203.0.113.7")!

    func client(peer: IPAddress, xff: [String] = [], forwarded: [String] = []) -> String {
        proxies.clientAddress(peer: peer, forwardedFor: xff, forwarded: forwarded).description
    }

    @Test func parsesLists() throws {
        #expect(proxies.blocks.count == 3)
        #expect(try TrustedProxies(parsing: "").isEmpty)
        #expect(try TrustedProxies(parsing: " , ").isEmpty)
        #expect(throws: CIDR.ParseError.self) { try TrustedProxies(parsing: "10.0.0.0/8,nope") }
    }

    @Test func headersFromAnUntrustedPeerAreIgnored() {
        #expect(client(peer: stranger, xff: ["198.51.100.1"]) == "203.0.113.7")
        #expect(client(peer: stranger, forwarded: ["for=198.51.100.1"]) == "203.0.113.7")
        // nobody trusted: nothing is believed, even from loopback
        #expect(
            TrustedProxies.none.clientAddress(peer: IPAddress("127.0.0.1")!, forwardedFor: ["198.51.100.1"], forwarded: []) == IPAddress("127.0.0.1"))
    }

    @Test func theRightmostUntrustedAddressIsTheClient() {
        #expect(client(peer: proxy) == "10.0.0.5")
        #expect(client(peer: proxy, xff: ["198.51.100.1"]) == "198.51.100.1")
        // what the client wrote itself (left of its real address) proves nothing
        #expect(client(peer: proxy, xff: ["1.1.1.1, 198.51.100.1"]) == "198.51.100.1")
        #expect(client(peer: proxy, xff: ["1.1.1.1", "198.51.100.1, 10.0.0.9"]) == "198.51.100.1")
        #expect(client(peer: proxy, xff: [" 2001:db8::7 , 127.0.0.1"]) == "2001:db8::7")
        // ports and brackets
        #expect(client(peer: proxy, xff: ["198.51.100.1:4711"]) == "198.51.100.1")
        #expect(client(peer: proxy, xff: ["[2001:db8::7]:4711"]) == "2001:db8::7")
        // every hop a proxy: the leftmost one
        #expect(client(peer: proxy, xff: ["10.1.1.1, 127.0.0.1"]) == "10.1.1.1")
        // an unreadable entry where the client should be: the proxy that forwarded it stands for it
        #expect(client(peer: proxy, xff: ["1.1.1.1, unknown"]) == "10.0.0.5")
        #expect(client(peer: proxy, xff: ["garbage, 10.0.0.9"]) == "10.0.0.9")
        #expect(client(peer: proxy, xff: [""]) == "10.0.0.5")
        #expect(client(peer: IPAddress("::1")!, xff: ["::ffff:198.51.100.1"]) == "198.51.100.1")
    }

    @Test func forwardedIsReadWhenThereIsNoXForwardedFor() {
        #expect(client(peer: proxy, forwarded: ["for=198.51.100.1"]) == "198.51.100.1")
        #expect(client(peer: proxy, forwarded: ["For=\"198.51.100.1:4711\";proto=https;by=10.0.0.5"]) == "198.51.100.1")
        #expect(client(peer: proxy, forwarded: ["for=\"[2001:db8:cafe::17]:4711\""]) == "2001:db8:cafe::17")
        #expect(client(peer: proxy, forwarded: ["for=1.1.1.1, for=198.51.100.1;proto=http", "for=10.0.0.9"]) == "198.51.100.1")
        #expect(client(peer: proxy, forwarded: ["proto=http;for=198.51.100.1"]) == "198.51.100.1")
        #expect(client(peer: proxy, forwarded: ["by=\"a,b;c\";for=198.51.100.1"]) == "198.51.100.1")  // quoted separators
        #expect(client(peer: proxy, forwarded: ["for=unknown"]) == "10.0.0.5")
        #expect(client(peer: proxy, forwarded: ["for=_hidden, for=198.51.100.1"]) == "198.51.100.1")
        #expect(client(peer: proxy, forwarded: ["proto=http"]) == "10.0.0.5")
        #expect(client(peer: proxy, forwarded: ["for=2001:db8::1"]) == "2001:db8::1")  // unbracketed IPv6 is read too
        // X-Forwarded-For wins when both are there
        #expect(client(peer: proxy, xff: ["198.51.100.1"], forwarded: ["for=198.51.100.2"]) == "198.51.100.1")
    }
}
