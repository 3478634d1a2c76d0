import Testing

@testable import MarqueeServer

/// Every Marquee session prints values the way the change feed's converter reads them, whatever the server's defaults
/// (the oracle test, tests/conformance/test_value_forms.py, sets the database's defaults to other styles).
@Suite struct SessionParametersTests {
    @Test func poolsAndConnectionsStartWithThem() throws {
        let url = try DatabaseURL(parsing: "postgres://u:p@127.0.0.1:5432/db")
        let expected = ["TimeZone=UTC", "DateStyle=ISO, MDY", "IntervalStyle=postgres", "bytea_output=hex", "extra_float_digits=1"]
        #expect(url.clientConfiguration().options.additionalStartupParameters.map { "\($0.0)=\($0.1)" } == expected)
        #expect(url.connectionConfiguration().options.additionalStartupParameters.map { "\($0.0)=\($0.1)" } == expected)
        #expect(
            DatabaseURL.sessionOptions
                == #"-c TimeZone=UTC -c DateStyle=ISO,\ MDY -c IntervalStyle=postgres -c bytea_output=hex -c extra_float_digits=1"#)
    }
}
