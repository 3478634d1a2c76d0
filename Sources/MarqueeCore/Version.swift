public enum MarqueeCoreVersion { public static let value = "0.1.0" }
