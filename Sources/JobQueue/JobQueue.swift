public enum JobQueuePlaceholder {}
