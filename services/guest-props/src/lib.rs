//! The guest properties HGCM service (`VBoxGuestPropSvc`).
