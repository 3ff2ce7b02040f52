/// Berth's version: the one place it is written. `berth --version` prints it and `/metrics`
/// exports it as `berth_build_info{version="..."} 1`. Raise it with each release.
public enum BerthVersion {
    public static let string = "0.1.0"
}
