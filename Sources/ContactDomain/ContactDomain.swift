public enum ContactPlaceholder {}
