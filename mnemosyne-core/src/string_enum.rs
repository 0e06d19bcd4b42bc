//! The `string_enum!` macro shared by the domain modules.

/// Declares a closed, snake_case string enum with parsing, printing and serde.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, default = $default:ident, { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable name, as stored and printed.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::$default
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::Error;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => {
                        let known: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                        Err($crate::Error::invalid(format!(
                            concat!("unknown ", $what, " {:?}; expected one of: {}"),
                            text,
                            known.join(", ")
                        )))
                    }
                }
            }
        }
    };
}
