package ops

// ReasonClass is reasonClass, for the external tests.
var ReasonClass = reasonClass
